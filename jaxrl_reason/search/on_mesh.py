"""Test-time search and decoding over a device mesh: each row on its own, the rows split over the devices.

``jr.decode(..., mesh=mesh)`` and ``jr.mcts_policy(..., mesh=mesh)`` run :func:`per_row`: row ``b`` is decoded
(or searched) as a batch of one with its own key ``split(key, B)[b]``, under ``jax.shard_map`` over the
mesh's devices (:func:`jaxrl_reason.parallel.map_examples`; the rows are split over every device when they
divide the batch, else over ``data``). No row reads another's, so the result does not depend on the mesh: a
mesh of one device gives the same bits as one of eight. It differs from ``mesh=None`` only in its random
numbers (one key per row instead of one for the batch); a deterministic method (greedy, beam, Gumbel MCTS
with ``gumbel_scale=0``) gives the same result either way. Self-play and held-out evaluation already run
this way (:mod:`jaxrl_reason.search.selfplay`, :func:`jr.evaluate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax

from jaxrl_reason import parallel
from jaxrl_reason.types import EnvState, Params, PRNGKey


def per_row(fn: Callable, mesh: jax.sharding.Mesh | None, params: Params, states: EnvState, key: PRNGKey) -> Any:
    """``fn(params, states [1], key)`` for every row of `states` [B] with key ``split(key, B)[b]``, the rows
    split over `mesh` (``None``: vmapped on the default device); the outputs (leading axis B) replicated on its
    devices. Trace it inside jit. :func:`jr.evaluate` and :meth:`jr.Agent.act` run their rows this way too."""
    if mesh is not None and not isinstance(mesh, jax.sharding.Mesh):
        raise ValueError(f"mesh: expected a jax.sharding.Mesh (e.g. jr.make_mesh()), got {type(mesh).__name__}")

    def one(params, state, key):
        out = fn(params, jax.tree.map(lambda x: x[None], state), key)
        return jax.tree.map(lambda x: x[0], out)

    keys = jax.random.split(key, states.length.shape[0])
    return parallel.gathered(parallel.map_examples(one, mesh, params, states, keys), mesh)
