"""The main job end to end on tiny configs: resume after kill -9 is bit-identical, same seed gives
the same params, bad input and NaNs stop with one clear message and keep the last good checkpoint."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxrl_reason.config import base_config, validate
from jaxrl_reason.envs.registry import make
from jaxrl_reason.evaluation.heldout import evaluate
from jaxrl_reason.problems import heldout_problems
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.run.metrics import read_metrics
from jaxrl_reason.training.cli import main
from jaxrl_reason.training.loop import KILL_AT_STEP_ENV, make_train_fns, train
from jaxrl_reason.training.state import TrainingError, build_model, build_optimizer, init_state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def restored_state(config, workdir):
    """The train state of the latest checkpoint of a finished run of `config` (read-only)."""
    env = make(config.env_id, **dict(config.env_kwargs))
    like = init_state(config, env, build_model(config, env), build_optimizer(config))
    with Checkpointer(workdir, read_only=True) as ckpt:
        state, _ = ckpt.restore(like)
    return jax.device_get(state)


def fresh_train_fns(config):
    """``(env, model, fns, state)``: a run's env, model, jitted train functions and fresh TrainState, as ``train``
    builds them before its first step."""
    env = make(config.env_id, **dict(config.env_kwargs))
    model, tx = build_model(config, env), build_optimizer(config)
    fns = make_train_fns(config, env, model, tx)
    return env, model, fns, init_state(config, env, model, tx, mesh=fns.mesh)


def tiny_config(**changes):
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 1
    c.model.overrides.d_model = 32
    c.model.overrides.num_layers = 1
    c.model.overrides.num_heads = 2
    c.model.overrides.mlp_dim = 64
    c.total_steps = 8
    c.sft.steps = 4
    c.sft.batch_size = 8
    c.sft.num_examples = 32
    c.selfplay.num_episodes = 4
    c.selfplay.num_simulations = 4
    c.selfplay.top_k = 4
    c.selfplay.max_depth = 4
    c.selfplay.updates_per_iteration = 2
    c.selfplay.batch_size = 4
    c.selfplay.replay_iterations = 2
    c.eval.num_problems = 8
    c.eval.batch_size = 8
    c.checkpoint_every = 4
    c.eval_every = 8
    c.log_every = 1
    c.optim.warmup_steps = 2
    for k, v in changes.items():
        node = c
        *parents, leaf = k.split("__")
        for p in parents:
            node = node[p]
        node[leaf] = v
    validate(c)
    return c


CONFIG_FILE = """
import sys
sys.path.insert(0, {tests!r})
from test_train import tiny_config
def get_config():
    return tiny_config()
"""


def _params(workdir, step=None):
    with Checkpointer(workdir) as ck:
        return Agent.load(workdir, step=step).params, ck.all_steps()


def _assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_resume_after_kill_is_bit_identical_and_same_seed_same_params(tmp_path):
    cfg_path = tmp_path / "tiny.py"
    cfg_path.write_text(CONFIG_FILE.format(tests=os.path.join(ROOT, "tests")))
    # Run B: a separate process, SIGKILLed right after its step-4 checkpoint (half way).
    env = {**os.environ, KILL_AT_STEP_ENV: "4", "PYTHONPATH": ROOT}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxrl_reason.train",
            "--config",
            str(cfg_path),
            "--workdir",
            str(tmp_path / "b"),
            "--no-progress",
        ],
        env=env,
        capture_output=True,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    # Run A: uninterrupted, in this process.
    summary = train(tiny_config(), str(tmp_path / "a"), progress=False)
    assert summary["step"] == 8
    last_eval = [r for r in read_metrics(str(tmp_path / "a")) if r["phase"] == "eval"][-1]
    assert last_eval["step"] == 8 and summary["accuracy"] == last_eval["accuracy"]
    # Same seed, two processes: identical params at the half-way checkpoint.
    _assert_same(_params(tmp_path / "a", 4)[0], _params(tmp_path / "b", 4)[0])
    # Resume B (SFT phase done, self-play phase and replay restored) and finish.
    train(tiny_config(), str(tmp_path / "b"), progress=False)
    params_a, steps_a = _params(tmp_path / "a")
    params_b, steps_b = _params(tmp_path / "b")
    assert steps_a == steps_b == [4, 8]
    _assert_same(params_a, params_b)


def test_training_writes_metrics_plots_and_a_playable_agent(tmp_path):
    train(tiny_config(total_steps=4, sft__steps=4, checkpoint_every=2, eval_every=2), str(tmp_path), progress=False)
    names = set(os.listdir(tmp_path))
    assert {"metrics.jsonl", "learning_curves.png", "config.json", "checkpoints", "tensorboard"} <= names
    agent = Agent.load(str(tmp_path))
    problems = heldout_problems(agent.env, agent.config)
    out = evaluate(agent, agent.env, problems, method="greedy", batch_size=8, return_responses=True)
    assert out["num_problems"] == 8 and [r["problem"] for r in out["responses"]] == problems
    # accuracy and mean reward are those of the returned responses, re-scored by the Python verifier
    rescored = [agent.env.score_text(r["problem"], r["response"]) for r in out["responses"]]
    assert [r["reward"] for r in out["responses"]] == rescored
    assert out["accuracy"] == np.mean(np.array(rescored) == 1.0) and out["mean_reward"] == np.mean(rescored)
    # the loop's last evaluation (step 4, greedy, the same problems and params) saw the same accuracy
    last_eval = [r for r in read_metrics(str(tmp_path)) if r["phase"] == "eval"][-1]
    assert last_eval["step"] == 4 and last_eval["accuracy"] == out["accuracy"]
    assert last_eval["tokens_generated"] == out["tokens_generated"]
    states = jax.vmap(agent.env.init)(jax.random.split(jax.random.PRNGKey(0), 3))
    actions = np.asarray(agent.act(jax.random.PRNGKey(1), states, method="greedy"))
    assert actions.shape == (3,) and np.asarray(states.legal_action_mask)[np.arange(3), actions].all()


def test_nan_stops_with_clear_error_and_keeps_last_good_checkpoint(tmp_path):
    config = tiny_config(total_steps=6, sft__steps=6, checkpoint_every=1, eval_every=100)
    config.optim.learning_rate = 1e38  # diverges within a few steps
    config.optim.grad_clip = 1e38
    with pytest.raises(TrainingError, match="non-finite"):
        train(config, str(tmp_path), progress=False)
    params, steps = _params(tmp_path)
    assert steps, "no checkpoint was kept"
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(params))


def test_cli_reports_bad_input_in_one_line(tmp_path, capsys):
    cfg = tmp_path / "c.py"
    cfg.write_text("from jaxrl_reason.config import base_config\ndef get_config():\n    return base_config()\n")
    assert main(["--config", str(cfg), "--workdir", str(tmp_path / "w"), "--config.total_stepz=3"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "did you mean 'total_steps'" in err
    assert main(["--config", str(cfg), "--workdir", str(tmp_path / "w"), "--config.env_id=nope-v0"]) == 2
    assert "unknown env id 'nope-v0'; registered: " in capsys.readouterr().err


def test_resuming_with_a_different_env_is_refused(tmp_path):
    train(tiny_config(total_steps=2, sft__steps=2, checkpoint_every=2, eval_every=100), str(tmp_path), progress=False)
    with pytest.raises(ValueError, match="holds a run with env_kwargs"):
        train(tiny_config(total_steps=4, sft__steps=2, env_kwargs__num_digits=2), str(tmp_path), progress=False)


def test_resuming_a_run_whose_env_kwargs_hold_a_tuple(tmp_path):
    # countdown's num_numbers=(3, 4) is saved as a JSON list; the same config must still resume
    config = tiny_config(env_id="countdown-v0", total_steps=2, sft__steps=2, checkpoint_every=1, eval_every=100)
    config.env_kwargs = {"num_numbers": (3, 4)}
    train(config, str(tmp_path), progress=False)
    config.total_steps = config.sft.steps = 3
    train(config, str(tmp_path), progress=False)
    assert Checkpointer(str(tmp_path)).latest_step() == 3


def test_value_target_mix_keeps_root_values_in_the_replay_and_guards_resumes(tmp_path):
    from jaxrl_reason.envs.registry import make
    from jaxrl_reason.training.state import build_model, build_optimizer, init_state

    config = tiny_config(total_steps=4, sft__steps=2, checkpoint_every=4, eval_every=100)
    config.selfplay.value_target_mix = 0.5
    train(config, str(tmp_path), progress=False)
    env = make(config.env_id, **dict(config.env_kwargs))
    like = init_state(config, env, build_model(config, env), build_optimizer(config))
    with Checkpointer(str(tmp_path)) as ck:
        state, _ = ck.restore(like)
    n = config.selfplay.num_episodes  # one self-play iteration (at step 2) filled the first n rows
    values, valid = np.asarray(state.buffer["values"][:n]), np.asarray(state.buffer["valid"][:n])
    assert valid.any() and (values[valid] != 0).any()  # the search's root values were kept
    assert (np.abs(values) <= 1.0 + 1e-6).all()
    assert not np.asarray(state.buffer["values"][n:]).any()  # rows never written stay zero
    config.selfplay.value_target_mix = 0.0  # another replay layout: one clear error, nothing overwritten
    config.total_steps = 6
    with pytest.raises(ValueError, match="laid out for other settings"):
        train(config, str(tmp_path), progress=False)
    assert Checkpointer(str(tmp_path)).all_steps() == [4]


def test_value_warmup_trains_only_the_value_head():
    from jaxrl_reason.algorithms.common import VALUE_HEAD_PARAMS
    from jaxrl_reason.envs.registry import make
    from jaxrl_reason.problems import demonstration_set, run_problem_sets
    from jaxrl_reason.training.imitation import sft_batch
    from jaxrl_reason.training.loop import make_train_fns
    from jaxrl_reason.training.state import build_model, build_optimizer, init_state

    config = tiny_config(total_steps=6, sft__steps=2, selfplay__value_warmup_steps=2)
    assert config.optim.weight_decay > 0  # decoupled weight decay must not shrink the frozen trunk either
    env = make(config.env_id, **config.env_kwargs)
    model = build_model(config, env)
    tx = build_optimizer(config)
    fns = make_train_fns(config, env, model, tx)
    state = init_state(config, env, model, tx)
    data = demonstration_set(env, run_problem_sets(env, 0, 16, 1)[0])
    for step in range(2):  # SFT first: Adam carries momentum for every parameter into the warm-up
        state, _ = fns.sft_update(state, sft_batch(data, step, config.sft.batch_size, 0))
    state, _ = fns.collect(state)
    before = jax.device_get(state.params)
    assert set(VALUE_HEAD_PARAMS) <= set(before)
    for _ in range(2):  # both inside the warm-up
        state, _ = fns.update(state)
    after = jax.device_get(state.params)
    for name in before:
        changed = any(
            not np.array_equal(a, b)
            for a, b in zip(jax.tree.leaves(before[name]), jax.tree.leaves(after[name]), strict=True)
        )
        assert changed == (name in VALUE_HEAD_PARAMS), name
    state, _ = fns.update(state)  # after the warm-up the policy trains too
    assert not np.array_equal(jax.device_get(state.params)["policy_head"], after["policy_head"])


def test_agent_searches_with_the_rescale_setting_it_was_trained_with(tmp_path):
    config = tiny_config(total_steps=2, sft__steps=2, checkpoint_every=2, eval_every=100)
    config.selfplay.rescale_values = False
    train(config, str(tmp_path), progress=False)
    agent = Agent.load(str(tmp_path))
    assert agent.search.rescale_values is False
    states = jax.vmap(agent.env.init)(jax.random.split(jax.random.PRNGKey(0), 2))
    agent.act(jax.random.PRNGKey(1), states, method="mcts", num_simulations=2, top_k=2)
    [(kind, method, _, search, _)] = agent._jitted  # the one compiled search: what it was built with
    assert (kind, method) == ("act", "mcts") and search.rescale_values is False
    assert (search.num_simulations, search.top_k) == (2, 2)
    assert Agent(model=agent.model, params=agent.params, env=agent.env).search.rescale_values is True  # mctx default


def test_a_config_saved_before_a_key_existed_loads_with_its_default():
    from jaxrl_reason.config import config_to_dict, saved_config
    from jaxrl_reason.envs.registry import make
    from jaxrl_reason.training.state import build_model, build_optimizer, init_state

    old = config_to_dict(tiny_config(seed=5))
    del old["selfplay"]["value_target_mix"], old["init"]  # keys this version added
    config = saved_config(old)
    assert config.selfplay.value_target_mix == 0.0 and config.init.workdir == ""  # today's defaults
    assert config.seed == 5 and config.env_kwargs.num_digits == 1 and config.model.overrides.d_model == 32  # kept
    env = make(config.env_id, **dict(config.env_kwargs))
    state = init_state(config, env, build_model(config, env), build_optimizer(config))  # what Agent.load builds
    assert "values" not in state.buffer


def test_a_run_saved_before_a_model_field_existed_still_resumes():
    # runs saved before `num_kv_heads` existed have no such key: it takes its default (multi-head)
    from jaxrl_reason.envs.registry import make
    from jaxrl_reason.training.warm_start import check_compatible as _check_compatible
    from jaxrl_reason.training.warm_start import run_meta as _meta

    config = tiny_config()
    current = _meta(config, make(config.env_id, **config.env_kwargs))
    assert current["model"]["num_kv_heads"] == current["model"]["num_heads"] == 2
    old = {**current, "model": {k: v for k, v in current["model"].items() if k != "num_kv_heads"}}
    _check_compatible(old, current, "w")  # no error
    grouped = {**current, "model": {**current["model"], "num_kv_heads": 1}}
    with pytest.raises(ValueError, match="holds a run with model="):
        _check_compatible(grouped, current, "w")


def test_rl_algorithms_use_their_own_learning_rate_after_imitation():
    from jaxrl_reason.training.state import learning_rate_schedule

    c = tiny_config(algorithm="star", total_steps=100, sft__steps=40)
    c.optim.learning_rate, c.optim.warmup_steps, c.optim.end_learning_rate_ratio = 1e-3, 10, 0.1
    c.rl.learning_rate, c.rl.warmup_steps = 5e-5, 4
    lr = learning_rate_schedule(c)
    assert float(lr(5)) == pytest.approx(5e-4)  # imitation warm-up: half way to the peak
    assert float(lr(10)) == pytest.approx(1e-3)
    assert float(lr(40 - 1)) == pytest.approx(1e-4 + 9e-4 * 0.5 * (1 + np.cos(np.pi * 29 / 30)), rel=1e-4)
    assert float(lr(40)) == 0.0 and float(lr(42)) == pytest.approx(2.5e-5)  # the RL warm-up restarts from 0
    assert float(lr(44)) == pytest.approx(5e-5) and float(lr(99)) == pytest.approx(5e-5)
    c.algorithm = "alphazero"  # AlphaZero continues the one schedule over the whole run
    assert float(learning_rate_schedule(c)(40)) > 1e-4


def test_an_rl_rate_without_warmup_applies_from_the_first_rl_update():
    from jaxrl_reason.training.state import learning_rate_schedule

    c = tiny_config(algorithm="grpo", total_steps=10, sft__steps=4)
    c.rl.learning_rate, c.rl.warmup_steps = 3e-5, 0
    lr = learning_rate_schedule(c)
    assert [float(lr(s)) for s in (4, 5, 9)] == pytest.approx([3e-5] * 3)
