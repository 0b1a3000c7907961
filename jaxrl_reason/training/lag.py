"""Collection with a bounded parameter lag (``rl.max_lag = k``): each collection samples with the params of
``k`` collections earlier, as an actor that runs ``k`` collections behind the learner would.

With ``k >= 1`` the train state keeps the actor's params in ``TrainState.actor``: a ring of the ``k`` last
collections' params, oldest first, and the step each was taken at::

    actor = {"params": (p_{c-k}, ..., p_{c-1}), "step": int32 [k]}

Collection ``c`` samples with the oldest snapshot, then drops it and appends the current params. At the first
RL collection every slot is filled with the current params (lazily, like GRPO's reference policy: a warm start
or the imitation phase changes the params before RL starts), so the first ``k`` collections sample with the
params at RL start, and collection ``c >= k`` with the params of collection ``c - k``: ``k * u`` optimizer
updates old, with ``u`` the algorithm's updates per collection (``collect_every``). The ring is part of the
state, so runs stay deterministic and resume bit for bit. ``k = 0`` keeps no ring (``actor`` is None; today's
lock-step loop and checkpoint layout).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.envs.core import tree_select


def init_actor(config, params):
    """The empty ring of ``rl.max_lag`` snapshots (copies of `params`, filled at the first RL collection), or
    None at ``rl.max_lag = 0``."""
    k = int(config.rl.max_lag)
    if k == 0:
        return None
    return {"params": tuple(jax.tree.map(jnp.copy, params) for _ in range(k)), "step": jnp.zeros((k,), jnp.int32)}


def behaviour_params(state, start: int):
    """``(params, state, metrics)``: the params collection at ``state.step`` samples with, and `state` with its
    ring advanced (see the module docstring); ``start`` is the first RL step. Without a ring: the current
    params, `state` unchanged and no metrics.

    ``metrics["rl_staleness"]``: optimizer updates between the sampling params and the current ones.
    """
    ring = state.actor
    if ring is None:
        return state.params, state, {}
    k = len(ring["params"])
    fresh = {"params": (state.params,) * k, "step": jnp.full((k,), state.step, jnp.int32)}
    ring = tree_select(state.step == start, fresh, ring)
    params, taken = ring["params"][0], ring["step"][0]
    advanced = {
        "params": ring["params"][1:] + (state.params,),
        "step": jnp.concatenate([ring["step"][1:], state.step[None].astype(jnp.int32)]),
    }
    return params, state.replace(actor=advanced), {"rl_staleness": (state.step - taken).astype(jnp.float32)}
