"""Sharded training equals 1-device training: SFT, self-play and RL steps on (data, fsdp) meshes of the 8
fake CPU devices give the same params as a 1-device mesh, and params/optimizer/replay are really laid out
as configured. Plus mesh/config errors and the parameter partitioning rules (golden specs)."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from jaxrl_reason import parallel
from jaxrl_reason.config import ConfigError, base_config, validate
from jaxrl_reason.envs.registry import make
from jaxrl_reason.problems import demonstration_set, run_problem_sets
from jaxrl_reason.training.imitation import sft_batch
from jaxrl_reason.training.loop import make_train_fns
from jaxrl_reason.training.state import build_model, build_optimizer, init_state

from .test_train import tiny_config


def test_mesh_shape_resolves_minus_one_and_rejects_sizes_that_do_not_divide():
    assert parallel.mesh_shape(-1, 1, num_devices=8) == (8, 1)
    assert parallel.mesh_shape(-1, 2, num_devices=8) == (4, 2)
    assert parallel.mesh_shape(2, -1, num_devices=8) == (2, 4)
    assert parallel.mesh_shape(1, 1, num_devices=1) == (1, 1)
    with pytest.raises(ValueError, match="do not divide the 8 devices: 3 does not divide 8"):
        parallel.mesh_shape(-1, 3, num_devices=8)
    with pytest.raises(ValueError, match="but 8 are available"):
        parallel.mesh_shape(2, 2, num_devices=8)
    with pytest.raises(ValueError, match="at most one mesh axis"):
        parallel.mesh_shape(-1, -1, num_devices=8)
    mesh = parallel.make_mesh(4, 2)
    assert dict(mesh.shape) == {"data": 4, "fsdp": 2} and mesh.devices.size == jax.device_count() == 8


def test_config_validates_mesh_and_distributed_keys():
    c = base_config()
    c.mesh.fsdp = 0
    with pytest.raises(ConfigError, match="mesh.fsdp"):
        validate(c)
    c = base_config()
    c.distributed.coordinator_address = "127.0.0.1:1234"
    with pytest.raises(ConfigError, match="num_processes"):
        validate(c)
    c.distributed.num_processes, c.distributed.process_id = 2, 1
    validate(c)


def test_param_partitioning_rules_golden():
    mesh = parallel.make_mesh(4, 2)
    # first rule whose dimension divides: "embed" before "vocab", odd sizes stay replicated
    assert parallel.param_spec(P("vocab", "embed"), (55, 32), mesh) == P(None, "fsdp")
    assert parallel.param_spec(P("embed", None, "heads", "kv"), (32, 3, 2, 16), mesh) == P("fsdp", None, None, None)
    assert parallel.param_spec(P("embed", "mlp"), (31, 64), mesh) == P(None, "fsdp")
    assert parallel.param_spec(P(None), (1,), mesh) == P(None)
    assert parallel.param_spec(P("vocab", "embed"), (55, 32), parallel.make_mesh(8, 1)) == P(None, None)
    assert parallel.batch_spec((12, 5), mesh) == P("data") and parallel.batch_spec((6,), mesh) == P()


def _config():
    return tiny_config(
        sft__batch_size=8,
        selfplay__num_episodes=8,
        selfplay__batch_size=8,
        selfplay__num_simulations=2,
        selfplay__top_k=2,
        selfplay__max_depth=2,
    )


def _one_iteration(shape):
    """SFT step, self-play iteration, RL step on a mesh of `shape`; returns the final state."""
    config = _config()
    env = make(config.env_id, **config.env_kwargs)
    model, tx = build_model(config, env), build_optimizer(config)
    train_dicts, _ = run_problem_sets(env, config.seed, config.sft.num_examples, 1)
    data = demonstration_set(env, train_dicts)
    mesh = parallel.make_mesh(*shape, devices=jax.devices()[: shape[0] * shape[1]])
    fns = make_train_fns(config, env, model, tx, mesh=mesh)
    state = init_state(config, env, model, tx, mesh=mesh)
    batch = sft_batch(data, 0, config.sft.batch_size, config.seed)
    state, _ = fns.sft_update(state, parallel.host_batch_to_global(batch, fns.batch_shardings(batch)))
    state, sp = fns.collect(state)
    state, metrics = fns.update(state)
    return state, {**jax.device_get(sp), **jax.device_get(metrics)}


@pytest.fixture(scope="module")
def reference():
    state, metrics = _one_iteration((1, 1))
    return jax.device_get(state), metrics


@pytest.mark.parametrize("shape", [(4, 2), (8, 1), (1, 8)])
def test_sharded_iteration_matches_one_device(reference, shape):
    ref_state, ref_metrics = reference
    state, metrics = _one_iteration(shape)
    data, fsdp = shape
    # really laid out as configured
    mlp_in = state.params["layer_0"]["mlp_in"]  # logical (embed, mlp) = (32, 64)
    assert mlp_in.sharding.spec == (P("fsdp", None) if fsdp > 1 else P(None, None))
    assert len(mlp_in.sharding.device_set) == data * fsdp
    if fsdp > 1:
        assert mlp_in.addressable_shards[0].data.shape == (32 // fsdp, 64)
    adam_mu = state.opt_state[1][0].mu["layer_0"]["mlp_in"]
    assert adam_mu.sharding.spec == mlp_in.sharding.spec
    assert state.buffer["tokens"].sharding.spec == P("data")
    assert state.buffer["tokens"].addressable_shards[0].data.shape[0] == state.buffer["tokens"].shape[0] // data
    # same numbers as one device (self-play played the same episodes: same returns and lengths)
    assert metrics["selfplay_length"] == ref_metrics["selfplay_length"]
    np.testing.assert_allclose(metrics["loss"], ref_metrics["loss"], rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(state.buffer["tokens"]), ref_state.buffer["tokens"])
    for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(ref_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_training_cli_uses_8_cpu_devices_unless_xla_flags_is_set(tmp_path):
    import os
    import subprocess
    import sys

    cfg = tmp_path / "c.py"
    cfg.write_text(
        "import jax\nfrom jaxrl_reason.config import base_config\n"
        "def get_config():\n    print('DEVICES', jax.device_count(), flush=True)\n"
        "    c = base_config()\n    c.total_steps = 0\n    return c\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env.update(JAX_PLATFORMS="cpu", PYTHONPATH=root)
    cmd = [sys.executable, "-m", "jaxrl_reason.train", "--config", str(cfg), "--workdir", str(tmp_path / "w")]
    for extra, devices in (({}, 8), ({"XLA_FLAGS": "--xla_force_host_platform_device_count=2"}, 2)):
        out = subprocess.run(cmd, env={**env, **extra}, capture_output=True, text=True, timeout=120, cwd=root)
        assert out.returncode == 2 and "total_steps" in out.stderr, out.stderr[-2000:]
        assert f"DEVICES {devices}" in out.stdout


def test_evaluation_and_acting_split_over_a_mesh_give_the_same_results():
    from jaxrl_reason.evaluation.heldout import evaluate
    from jaxrl_reason.problems import heldout_problems
    from jaxrl_reason.run.agent import Agent
    from tests._tiny_run import tiny_run

    one = Agent.load(tiny_run())
    eight = Agent.load(tiny_run(), mesh=parallel.make_mesh(-1, 1))
    assert eight.mesh.devices.size == 8
    problems = heldout_problems(one.env, one.config)
    for method in ("sample", "mcts"):  # both use per-problem keys
        kw = dict(method=method, num_simulations=4, search=one.search.replace(top_k=4), batch_size=8, seed=3)
        a, b = evaluate(one, one.env, problems, **kw), evaluate(eight, eight.env, problems, **kw)
        assert a == b, method  # the same per-problem keys: the same answers, whatever the devices
    states = jax.vmap(one.env.init)(jax.random.split(jax.random.PRNGKey(0), 16))
    x = one.act(jax.random.PRNGKey(1), states, method="mcts", num_simulations=4, top_k=4, temperature=1.0)
    y = eight.act(jax.random.PRNGKey(1), states, method="mcts", num_simulations=4, top_k=4, temperature=1.0)
    np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert np.asarray(states.legal_action_mask)[np.arange(16), np.asarray(x)].all()
