"""The plain way to search with mctx: the references `jr.mcts_policy` and `jr.step_mcts_policy` are checked against.

Full action space (every token is an action), the env state itself as the node embedding, and a full
forward of the whole token buffer per evaluation: no top-K slots, no prefix sharing. With ``top_k`` equal
to the number of actions, :func:`jaxrl_reason.search.mcts_policy` must give the same action weights and
root value (tested), and ``bench/search.py`` times this as the naive baseline. It shares only the env
transition (reward, discount) with ``mcts_policy``, nothing of its tree layout.

:func:`dense_step_mcts_policy` is the same for step search: every step of a given list is an action, its
prior from full forwards token by token, the env state the node embedding (nothing shared with
``jr.step_mcts_policy``: no sampling, no K/V, no candidate merging).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import mctx

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.search.mcts import _transition
from jaxrl_reason.types import EnvState, Params, PRNGKey


def dense_mcts_policy(
    model,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    num_simulations: int,
    algorithm: str = "gumbel",
    max_depth: int | None = None,
    **mctx_kwargs,
) -> mctx.PolicyOutput:
    """mctx's ``gumbel_muzero_policy`` / ``muzero_policy`` over all ``A`` actions of ``states`` [B].

    ``model`` needs only ``apply(params, tokens) -> (logits [B, L, A], values [B, L])``; ``mctx_kwargs`` go
    to the mctx policy as they are (e.g. ``gumbel_scale``, ``dirichlet_fraction``, ``qtransform``).
    """
    if algorithm not in ("gumbel", "muzero"):
        raise ValueError(f"algorithm must be 'gumbel' or 'muzero', got {algorithm!r}")

    def evaluate(state):
        logits, values = model.apply(params, state.tokens)
        last = jnp.maximum(state.length - 1, 0)
        logits = jnp.take_along_axis(logits, last[:, None, None], axis=1)[:, 0]
        value = jnp.take_along_axis(values, last[:, None], axis=1)[:, 0]
        return jnp.where(state.legal_action_mask, logits, -jnp.inf), jnp.where(state.done, 0.0, value)

    def recurrent_fn(_, __, action, state):
        child, reward, discount = _transition(env, state, action)
        prior, value = evaluate(child)
        return mctx.RecurrentFnOutput(reward=reward, discount=discount, prior_logits=prior, value=value), child

    prior, value = evaluate(states)
    root = mctx.RootFnOutput(prior_logits=prior, value=value, embedding=states)
    policy = mctx.gumbel_muzero_policy if algorithm == "gumbel" else mctx.muzero_policy
    return policy(
        None,
        key,
        root,
        recurrent_fn,
        num_simulations,
        invalid_actions=~states.legal_action_mask,
        max_depth=max_depth,
        **mctx_kwargs,
    )


def _step_children(model, params, env: TokenEnv, state: EnvState, steps, lengths, step_ids):
    """Every step of ``steps [M, S]`` played from each of `state` [N], by full forwards one token at a time.

    Returns ``(prior [N, M], children [N*M], reward [N*M])``: the step's log-probability under the
    legal-masked policy, ``-inf`` where it is not a step there (an illegal token, or the step would end
    before its last token or not at it)."""
    num, size = steps.shape
    rows = state.length.shape[0]
    cur = jax.tree.map(lambda x: jnp.repeat(x, num, axis=0), state)
    toks, n = jnp.tile(steps, (rows, 1)), jnp.tile(lengths, rows)
    ok = ~cur.done
    log_p = jnp.zeros(n.shape)
    reward = jnp.zeros(n.shape)
    for j in range(size):
        live = j < n
        logits, _ = model.apply(params, cur.tokens)
        logits = jnp.take_along_axis(logits, jnp.maximum(cur.length - 1, 0)[:, None, None], axis=1)[:, 0]
        masked = jnp.where(cur.legal_action_mask, logits, -jnp.inf)
        t = toks[:, j]
        lp = jnp.take_along_axis(jax.nn.log_softmax(masked, axis=-1), t[:, None], axis=1)[:, 0]
        legal = jnp.take_along_axis(cur.legal_action_mask, t[:, None], axis=1)[:, 0] & ~cur.done
        nxt = jax.vmap(env.step)(cur, t)
        ends = jnp.isin(t, jnp.asarray(step_ids)) | nxt.done
        ok = ok & jnp.where(live, legal & jnp.where(j == n - 1, ends, ~ends), True)
        log_p = log_p + jnp.where(live, lp, 0.0)
        reward = reward + jnp.where(live, nxt.rewards[:, 0], 0.0)
        cur = jax.tree.map(lambda a, b: jnp.where(live.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), nxt, cur)
    return jnp.where(ok, log_p, -jnp.inf).reshape(rows, num), cur, reward


def dense_step_mcts_policy(
    model,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    steps,
    step_lengths,
    step_ids,
    num_simulations: int,
    algorithm: str = "gumbel",
    max_depth: int | None = None,
    use_reward: bool = True,
    **mctx_kwargs,
) -> mctx.PolicyOutput:
    """The plain step search `jr.step_mcts_policy` is checked against: every step of a known list is an action.

    ``steps [M, S]`` (pad beyond ``step_lengths [M]``) must list every step the policy can write; at each
    node a step's prior is its log-probability (full forwards, token by token) and ``-inf`` where it is not
    a step there; the node embedding is the env state; the value is the value head after the step (0 once
    finished), the reward the env's (``use_reward``) or the value of a finished state. One-player tasks.
    A finished node gets a uniform prior over unchanged children (nothing below it reaches the root).
    """
    steps, lengths = jnp.asarray(steps, jnp.int32), jnp.asarray(step_lengths, jnp.int32)

    def value_of(state):
        _, values = model.apply(params, state.tokens)
        return jnp.take_along_axis(values, jnp.maximum(state.length - 1, 0)[:, None], axis=1)[:, 0]

    def expand(state):
        prior, _, _ = _step_children(model, params, env, state, steps, lengths, step_ids)
        return jnp.where(state.done[:, None], 0.0, prior)

    def recurrent_fn(_, __, action, state):
        _, children, reward = _step_children(model, params, env, state, steps, lengths, step_ids)
        pick = jnp.arange(action.shape[0]) * steps.shape[0] + action
        child, reward = jax.tree.map(lambda x: x[pick], children), reward[pick]
        value = value_of(child)
        reward = reward if use_reward else jnp.where(child.done, value, 0.0)
        out = mctx.RecurrentFnOutput(
            reward=reward,
            discount=jnp.where(child.done, 0.0, 1.0),
            prior_logits=expand(child),
            value=jnp.where(child.done, 0.0, value),
        )
        return out, child

    prior = expand(states)
    root = mctx.RootFnOutput(prior_logits=prior, value=jnp.where(states.done, 0.0, value_of(states)), embedding=states)
    policy = mctx.gumbel_muzero_policy if algorithm == "gumbel" else mctx.muzero_policy
    return policy(
        None,
        key,
        root,
        recurrent_fn,
        num_simulations,
        invalid_actions=~jnp.isfinite(prior),
        max_depth=max_depth,
        **mctx_kwargs,
    )
