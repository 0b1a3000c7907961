"""Self-play episode generation: MCTS at every token, ``lax.scan`` over token positions.

``selfplay`` is a pure function of ``(params, states, key)``; callers jit it (the training loop
does, once). It returns a :class:`~jaxrl_reason.types.Trajectory` whose ``policy`` holds the
search's improved policy π at every step — the AlphaZero policy target.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.envs.replay import written_steps
from jaxrl_reason.search.config import SearchConfig
from jaxrl_reason.search.mcts import mcts_policy
from jaxrl_reason.types import EnvState, Trajectory


def selfplay(
    model,
    params,
    env,
    states: EnvState,
    key: jax.Array,
    *,
    search: SearchConfig,
    temperature: float = 1.0,
    num_steps: int | None = None,
) -> Trajectory:
    """Plays a batch of episodes to the end with a search at every step.

    Args:
      model, params: the policy-value network.
      env: a token env; `states` a batch ``[B]`` of its states.
      key: PRNG key (consumed).
      search: the search run at every step (:class:`~jaxrl_reason.search.SearchConfig`).
      temperature: 0 plays the argmax of π; otherwise the action is sampled from ``π^(1/temperature)``
        (with Gumbel search and temperature 1, the search's own Gumbel-selected action).
      num_steps: steps to play (default ``spec.max_response_length``, enough to end every episode).
    Returns:
      Trajectory with ``policy [B, T, A]``; ``log_probs`` are log π(action); ``env_written`` as in
      :func:`jr.rollout` (None unless ``env.writes_tokens``).
    """
    spec = env.spec
    num_steps = num_steps or spec.max_response_length
    step = jax.vmap(env.step)

    def body(states: EnvState, key_t):
        k_search, k_act = jax.random.split(key_t)
        out = mcts_policy(model, params, env, states, k_search, search=search)
        weights = out.action_weights
        log_w = jnp.log(jnp.where(weights > 0, weights, 1e-30))
        if temperature == 0:
            action = jnp.argmax(weights, axis=-1)
        elif search.algorithm == "gumbel" and temperature == 1.0:
            action = out.action
        else:
            action = jax.random.categorical(k_act, log_w / temperature, axis=-1)
        action = action.astype(jnp.int32)
        valid = ~states.done
        nxt = step(states, action)
        record = {
            "actions": jnp.where(valid, action, spec.pad_id),
            "log_probs": jnp.where(valid, jnp.take_along_axis(log_w, action[:, None], 1)[:, 0], 0.0),
            "values": out.root_value.astype(jnp.float32),
            "rewards": nxt.rewards,
            "players": states.current_player,
            "valid": valid,
            "policy": jnp.where(valid[:, None], weights, 0.0).astype(jnp.float32),
        }
        return nxt, record

    final, rec = jax.lax.scan(body, states, jax.random.split(key, num_steps))
    rec = jax.tree.map(lambda x: jnp.swapaxes(x, 0, 1), rec)  # [T, B, ...] -> [B, T, ...]
    return Trajectory(
        tokens=final.tokens,
        prompt_length=states.prompt_length,
        final_state=final,
        env_written=written_steps(env, final, states.prompt_length, rec["valid"]),
        **rec,
    )
