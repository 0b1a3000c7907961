"""Warm starts across runs (``config.init``): a fresh run takes another run's params, e.g. GRPO after an SFT run."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from jaxrl_reason.config import ConfigError, load_config
from jaxrl_reason.envs.registry import make
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.training.loop import train
from jaxrl_reason.training.state import build_model, build_optimizer, init_state
from jaxrl_reason.training.warm_start import init_params_from
from tests._tiny_run import tiny_run
from tests.test_train import tiny_config


def _leaves_equal(a, b) -> bool:
    return all(
        np.array_equal(np.asarray(x), np.asarray(y))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )


def _fresh(config):
    env = make(config.env_id, **dict(config.env_kwargs))
    model = build_model(config, env)
    return env, model, init_state(config, env, model, build_optimizer(config))


def test_init_from_takes_the_source_params_and_the_grpo_reference(tmp_path):
    source = tiny_run()
    config = tiny_config(algorithm="grpo", sft__steps=0, rl__kl_coef=0.1, init__workdir=source, seed=7)
    env, model, state = _fresh(config)
    src = Agent.load(source)
    assert not _leaves_equal(state.params, src.params)  # a different seed: a different random init
    new, where = init_params_from(config, env, model, state)
    assert _leaves_equal(new.params, src.params)
    assert _leaves_equal(new.ref_params, src.params)  # KL is measured against the warm start
    assert _leaves_equal(new.opt_state, state.opt_state) and int(new.step) == 0  # optimizer and step stay fresh
    assert where.endswith(os.path.join("checkpoints", "6"))


def test_init_from_a_checkpoint_by_step(tmp_path):
    source = tiny_run()  # 6 SFT steps, one checkpoint: step 6
    config = tiny_config(init__workdir=source, init__step=6)
    new, where = init_params_from(config, *_fresh(config))
    assert _leaves_equal(new.params, Agent.load(source, step=6).params) and where.endswith("6")
    config = tiny_config(init__workdir=source, init__step=3)
    with pytest.raises(ConfigError, match="no checkpoint for step 3"):
        init_params_from(config, *_fresh(config))


def test_a_run_warm_started_from_another_trains_from_its_params(tmp_path):
    source = tiny_run()
    config = tiny_config(algorithm="none", total_steps=2, sft__steps=2, checkpoint_every=2, eval_every=2)
    config.init.workdir, config.optim.learning_rate = source, 1e-9
    train(config, str(tmp_path / "warm"), progress=False)
    # with a vanishing learning rate the warm run ends where the source run did
    got, src = Agent.load(str(tmp_path / "warm")).params, Agent.load(source).params
    for x, y in zip(jax.tree.leaves(got), jax.tree.leaves(src), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), atol=1e-6)
    with open(tmp_path / "warm" / "config.json") as f:
        assert json.load(f)["config"]["init"]["workdir"] == source


def test_resuming_ignores_init_workdir(tmp_path):
    source = tiny_run()
    base = dict(algorithm="none", total_steps=4, sft__steps=4, checkpoint_every=2, eval_every=4)
    straight = str(tmp_path / "straight")
    train(tiny_config(**base), straight, progress=False)
    # the same run stopped after step 2, then restarted with a warm start asked for: it resumes its own
    # checkpoint, and ends bit-identical to the run that never stopped
    stopped = str(tmp_path / "stopped")
    shutil.copytree(straight, stopped)
    shutil.rmtree(os.path.join(stopped, "checkpoints", "4"))
    train(tiny_config(**base, init__workdir=source), stopped, progress=False)
    assert _leaves_equal(Agent.load(stopped, step=4).params, Agent.load(straight, step=4).params)


def test_init_from_bad_sources_is_one_clear_error(tmp_path):
    source = tiny_run()
    with pytest.raises(ConfigError, match="expected a run directory with a checkpoint"):
        init_params_from(tiny_config(init__workdir=str(tmp_path / "nope")), *_fresh(tiny_config()))
    assert not os.path.exists(tmp_path / "nope")  # nothing created in the source's place
    config = tiny_config(init__workdir=source, model__overrides__d_model=48)
    with pytest.raises(ConfigError, match="d_model"):
        init_params_from(config, *_fresh(config))
    config = tiny_config(init__workdir=source, env_id="sort-v0", env_kwargs={})
    with pytest.raises(ConfigError, match="actions|d_model|differs"):
        init_params_from(config, *_fresh(config))
    cfg = tmp_path / "c.py"
    cfg.write_text("from jaxrl_reason.config import base_config\ndef get_config():\n    return base_config()\n")
    with pytest.raises(ConfigError, match="init.step"):
        load_config(str(cfg), ["init.step=-5"])
