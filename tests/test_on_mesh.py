"""Test-time decoding and search over a mesh (``mesh=`` on ``jr.decode`` / ``jr.mcts_policy``): each row is
decoded on its own with key ``split(key, B)[b]``, so the result equals a loop over rows and does not depend
on the mesh (8 fake CPU devices, tests/conftest.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from tests.test_core import Echo

ECHO = Echo()
MODEL = jr.PolicyValueTransformer(
    jr.TransformerConfig.for_env(ECHO.spec, d_model=16, num_heads=2, num_layers=1, mlp_dim=32)
)
PARAMS = MODEL.init(jax.random.key(3))
STATES = jax.vmap(ECHO.init_from_problem)(jnp.arange(8, dtype=jnp.int32))
KEY = jax.random.key(7)
MESH8 = jr.make_mesh(8, 1)
MESH1 = jr.make_mesh(1, 1, devices=jax.devices()[:1])


def _rows(tree, b):
    return jax.tree.map(lambda x: x[b : b + 1], tree)


def _same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_sampling_on_a_mesh_equals_a_loop_over_rows_and_any_other_mesh():
    decode = jax.jit(jr.decode, static_argnums=(0, 2), static_argnames=("method", "mesh", "temperature"))
    out8 = decode(MODEL, PARAMS, ECHO, STATES, KEY, method="sample", temperature=1.0, mesh=MESH8)
    out1 = decode(MODEL, PARAMS, ECHO, STATES, KEY, method="sample", temperature=1.0, mesh=MESH1)
    _same(out8.tokens, out1.tokens)
    keys = jax.random.split(KEY, 8)
    for b in range(8):  # the reference: row b alone, with its own key, no mesh
        ref = decode(MODEL, PARAMS, ECHO, _rows(STATES, b), keys[b], method="sample", temperature=1.0)
        _same(out8.tokens[b : b + 1], ref.tokens)
        _same(out8.flops[b : b + 1], ref.flops)
    # not one shared row: the responses of the 8 rows differ (random params, temperature 1)
    assert len({tuple(np.asarray(t)) for t in out8.tokens[:, 2:]}) > 1
    greedy8 = decode(MODEL, PARAMS, ECHO, STATES, KEY, method="greedy", mesh=MESH8)
    greedy = decode(MODEL, PARAMS, ECHO, STATES, KEY, method="greedy")
    _same(greedy8, greedy)  # deterministic: the same as the whole batch without a mesh


def test_mcts_on_a_mesh_equals_one_search_per_root():
    search = jr.SearchConfig(num_simulations=8, top_k=4, max_depth=3)
    policy = jax.jit(jr.mcts_policy, static_argnums=(0, 2), static_argnames=("search", "mesh"))
    out = policy(MODEL, PARAMS, ECHO, STATES, KEY, search=search, mesh=jr.make_mesh(4, 2))
    keys = jax.random.split(KEY, 8)
    for b in (0, 5):
        ref = policy(MODEL, PARAMS, ECHO, _rows(STATES, b), keys[b], search=search)
        np.testing.assert_array_equal(out.action[b : b + 1], ref.action)
        np.testing.assert_allclose(out.action_weights[b : b + 1], ref.action_weights, rtol=0, atol=1e-6)
        np.testing.assert_allclose(out.root_value[b : b + 1], ref.root_value, rtol=0, atol=1e-6)


def test_a_bad_mesh_argument_is_one_clear_error():
    with pytest.raises(ValueError, match="mesh: expected a jax.sharding.Mesh"):
        jr.decode(MODEL, PARAMS, ECHO, STATES, KEY, method="greedy", mesh="data")
    cache = MODEL.init_cache(8)
    with pytest.raises(ValueError, match="expected cache=None with a mesh"):
        jr.mcts_policy(MODEL, PARAMS, ECHO, STATES, KEY, cache=cache, mesh=MESH8)
