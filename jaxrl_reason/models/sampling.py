"""Sampling rollouts: batched episodes from the policy with a KV cache (prefill once, decode per token).

:func:`rollout` plays ``T = spec.max_response_length`` steps of a batch of episodes under
``lax.scan``: the prompts are encoded once (:meth:`PolicyValueTransformer.prefill`), then each step
samples an action from the legal-masked policy, steps the env (``vmap(env.step)``) and feeds the
action's token to :meth:`PolicyValueTransformer.decode`. Rows whose episode ended keep stepping
harmlessly (the env freezes them) and are marked ``valid=False``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.envs.replay import written_steps
from jaxrl_reason.models.transformer import PolicyValueTransformer
from jaxrl_reason.types import Array, EnvState, Params, PRNGKey, Trajectory


def mask_logits(logits: Array, legal_action_mask: Array) -> Array:
    """``logits [..., A]`` with illegal actions set to ``-inf`` (never sampled, probability exactly 0)."""
    return jnp.where(legal_action_mask, logits, -jnp.inf)


def _is_static(x) -> bool:
    return isinstance(x, (int, float))


def _check_sampling_args(temperature, top_k, top_p, greedy) -> None:
    """Checks the Python-number hyper-parameters (arrays may be traced, so they are taken as given)."""
    if not isinstance(greedy, bool):
        raise ValueError(f"greedy: expected a Python bool, got {greedy!r}")
    if not greedy and _is_static(temperature) and not temperature > 0:
        raise ValueError(f"temperature: expected > 0 (or greedy=True), got {temperature}")
    if top_k is not None and _is_static(top_k) and (not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k: expected None or an int >= 1, got {top_k!r}")
    if top_p is not None and _is_static(top_p) and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p: expected None or a float in (0, 1], got {top_p!r}")


def sample_action(
    key: PRNGKey,
    logits: Array,
    *,
    temperature: float | Array = 1.0,
    top_k: int | Array | None = None,
    top_p: float | Array | None = None,
    greedy: bool = False,
) -> Array:
    """Samples from ``logits [B, A]`` (already legal-masked with ``-inf``) -> actions ``[B]`` int32.

    ``greedy`` (a Python bool) takes the argmax; otherwise logits are divided by ``temperature``,
    restricted to the ``top_k`` largest (ties at the k-th value are kept) and/or to the smallest set
    whose probability reaches ``top_p`` (nucleus; the most likely action is always kept), then sampled.
    ``-inf`` logits are never sampled. ``temperature``, ``top_k`` and ``top_p`` may be traced scalars
    (one compilation serves every setting; ``top_k = A`` and ``top_p = 1`` disable the filters).
    """
    _check_sampling_args(temperature, top_k, top_p, greedy)
    if greedy:
        return jnp.argmax(logits, axis=-1).astype(jnp.int32)
    logits = logits / temperature
    if top_k is not None or top_p is not None:
        sorted_logits = -jnp.sort(-logits, axis=-1)  # descending
        if top_k is not None:
            k = jnp.clip(jnp.asarray(top_k, jnp.int32), 1, logits.shape[-1])
            kth = jnp.take(sorted_logits, k - 1, axis=-1)[..., None]
            logits = jnp.where(logits >= kth, logits, -jnp.inf)
            sorted_logits = jnp.where(sorted_logits >= kth, sorted_logits, -jnp.inf)
        if top_p is not None:
            probs = jax.nn.softmax(sorted_logits, axis=-1)
            before = jnp.cumsum(probs, axis=-1) - probs  # mass strictly before each sorted action
            cutoff = jnp.min(jnp.where(before < top_p, sorted_logits, jnp.inf), axis=-1, keepdims=True)
            logits = jnp.where(logits >= cutoff, logits, -jnp.inf)
    return jax.random.categorical(key, logits, axis=-1).astype(jnp.int32)


def rollout(
    model: PolicyValueTransformer,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    greedy: bool = False,
    masked_log_probs: bool = True,
) -> Trajectory:
    """Generates a batch of episodes from the policy (pure; jit it with the hyper-parameters static).

    Args:
      model, params: the policy-value transformer; ``model.config.num_actions`` must equal
        ``env.spec.num_actions`` and ``model.config.max_length >= env.spec.max_length``.
      env: any :class:`~jaxrl_reason.TokenEnv` (its unbatched ``step`` is vmapped).
      states: ``[B]`` batched initial states (``length <= spec.max_prompt_length``: the first
        ``spec.max_prompt_length`` tokens are prefilled; each row continues from its own ``length``).
      key: PRNG key (one split per step).
      temperature, top_k, top_p, greedy: the sampling rule (see :func:`sample_action`); illegal actions
        (``states.legal_action_mask``) are never sampled.
      masked_log_probs: ``log_probs`` are those of the sampled action under the temperature-1 policy
        restricted to the legal actions (``log_softmax(mask_logits(logits))``); False gives the
        unmasked ``log_softmax(logits)`` instead (what a plain full forward recomputes).

    Returns:
      :class:`~jaxrl_reason.Trajectory` with ``T = spec.max_response_length`` steps: ``actions``
      (``spec.pad_id`` where not valid), ``log_probs`` (0 where not valid), ``values`` (the model's value
      of the state before each action, for the player to move; 0 where not valid), ``rewards [B,T,P]``, ``players``,
      ``valid`` (the episode was live before the step), ``final_state``; ``policy`` is None; ``env_written``
      (live steps whose token the env wrote, ``env.written_mask``) when ``env.writes_tokens``, else None.
    """
    spec, cfg = env.spec, model.config
    _check_sampling_args(temperature, top_k, top_p, greedy)
    if cfg.num_actions != spec.num_actions:
        raise ValueError(f"model.config.num_actions={cfg.num_actions} but env {spec.env_id} has {spec.num_actions}")
    if cfg.max_length < spec.max_length:
        raise ValueError(f"model.config.max_length={cfg.max_length} is shorter than env max_length={spec.max_length}")
    if states.tokens.ndim != 2 or states.tokens.shape[1] != spec.max_length:
        raise ValueError(f"states.tokens: expected a batch [B, {spec.max_length}], got {states.tokens.shape}")
    batch = states.tokens.shape[0]
    rows = jnp.arange(batch)

    prompt_window = states.tokens[:, : spec.max_prompt_length]
    logits, values, cache = model.prefill(params, prompt_window, states.length)
    last = jnp.clip(states.length - 1, 0, spec.max_prompt_length - 1)
    logits, values = logits[rows, last], values[rows, last]

    def step(carry, step_key):
        state, cache, logits, value = carry
        masked = mask_logits(logits, state.legal_action_mask)
        action = sample_action(step_key, masked, temperature=temperature, top_k=top_k, top_p=top_p, greedy=greedy)
        log_p = jax.nn.log_softmax(masked if masked_log_probs else logits, axis=-1)[rows, action]
        valid = ~state.done
        nxt = jax.vmap(env.step)(state, action)
        position = jnp.minimum(state.length, cfg.max_length - 1)  # frozen rows write harmlessly
        next_logits, next_value, cache = model.decode(params, cache, action, position)
        out = dict(
            actions=jnp.where(valid, action, spec.pad_id).astype(jnp.int32),
            log_probs=jnp.where(valid, log_p, 0.0),
            values=jnp.where(valid, value, 0.0),
            rewards=nxt.rewards,
            players=state.current_player,
            valid=valid,
        )
        return (nxt, cache, next_logits, next_value), out

    keys = jax.random.split(key, spec.max_response_length)
    (final, _, _, _), out = jax.lax.scan(step, (states, cache, logits, values), keys)
    out = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), out)  # [T, B, ...] -> [B, T, ...]
    return Trajectory(
        tokens=final.tokens,
        prompt_length=states.prompt_length,
        final_state=final,
        env_written=written_steps(env, final, states.prompt_length, out["valid"]),
        **out,
    )
