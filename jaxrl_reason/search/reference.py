"""The plain way to search over tokens with mctx: the reference `jr.mcts_policy` is checked against.

Full action space (every token is an action), the env state itself as the node embedding, and a full
forward of the whole token buffer per evaluation: no top-K slots, no prefix sharing. With ``top_k`` equal
to the number of actions, :func:`jaxrl_reason.search.mcts_policy` must give the same action weights and
root value (tested), and ``bench/search.py`` times this as the naive baseline. It shares only the env
transition (reward, discount) with ``mcts_policy``, nothing of its tree layout.
"""

from __future__ import annotations

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
