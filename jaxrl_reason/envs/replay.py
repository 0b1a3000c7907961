"""Which tokens of a batch of episodes the environment wrote (``TokenEnv.written_mask``), for the losses.

Losses never train the policy on env-written tokens (a tool's answer): :func:`written_steps` reads them off a
rollout's final states per step, :func:`replay_written` recovers them for token arrays that come as text (a
demonstration) by replaying the response through the env.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.envs.core import TokenEnv, tree_select
from jaxrl_reason.types import Array, EnvState, Problem


def written_steps(env: TokenEnv, final: EnvState, prompt_length: Array, valid: Array) -> Array | None:
    """``[B, T]`` bool: step ``t`` of row ``b`` was live and its token (at ``prompt_length[b] + t``) was written by
    the env, from the batched final states `final`; None when the env never writes (``env.writes_tokens``)."""
    if not env.writes_tokens:
        return None
    written = jax.vmap(env.written_mask)(final)  # [B, L]
    pos = prompt_length[:, None] + jnp.arange(valid.shape[1], dtype=jnp.int32)[None, :]
    at = jnp.take_along_axis(written, jnp.clip(pos, 0, written.shape[1] - 1), axis=1)
    return valid & at & (pos < written.shape[1])


def replay_written(env: TokenEnv, problems: Problem, tokens: Array, prompt_length: Array, length: Array) -> Array:
    """``[B, L]`` bool: ``env.written_mask`` after replaying each row's response through the env (pure; jit it
    with `env` static).

    Args:
      env: the token env the tokens were written for.
      problems: a batched problem pytree (leading axis B), the problems the rows answer.
      tokens: ``[B, L]`` int32, prompt then response (e.g. a tokenised demonstration).
      prompt_length, length: ``[B]`` int32; the response is ``tokens[b, prompt_length[b]:length[b]]``.
    Where the env forces a token the response must hold it (a demonstration writes the tool's true answer);
    steps after the episode ends change nothing.
    """
    steps = jnp.arange(env.spec.max_response_length, dtype=jnp.int32)
    last = tokens.shape[1] - 1

    def one(problem, row, start, end):  # one episode; vmapped below
        def body(state, t):
            pos = start + t
            nxt = env.step(state, row[jnp.clip(pos, 0, last)])
            return tree_select(pos < end, nxt, state), None

        final, _ = jax.lax.scan(body, env.init_from_problem(problem), steps)
        return env.written_mask(final)

    return jax.vmap(one)(problems, tokens, prompt_length, length)
