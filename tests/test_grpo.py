"""GRPO / RLOO: hand-computed advantages and clipped losses; a GRPO run (with the KL reference) resumes
bit for bit from a checkpoint taken between two updates on the same sampled batch."""

import json
import math
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.grpo import group_advantages, k3_kl, policy_gradient_loss
from jaxrl_reason.config import ConfigError, validate
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.training.loop import train
from tests.test_train import _assert_same, _params, tiny_config


def test_grpo_advantages_golden_and_identical_rewards_give_zero():
    adv = np.asarray(group_advantages(jnp.array([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]]), eps=0.0 + 1e-6))
    np.testing.assert_allclose(adv[0], [1, -1, -1, 1], atol=1e-5)  # mean .5, population std .5
    np.testing.assert_array_equal(adv[1], 0.0)
    np.testing.assert_array_equal(np.asarray(group_advantages(jnp.zeros((1, 3)))), 0.0)


def test_rloo_baseline_excludes_the_sample_itself():
    adv = np.asarray(group_advantages(jnp.array([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.5]]), estimator="rloo"))
    # row 0: 1 - mean(0,0,0) = 1; 0 - mean(1,0,0) = -1/3
    np.testing.assert_allclose(adv[0], [1.0, -1 / 3, -1 / 3, -1 / 3], rtol=1e-6)
    # row 1: 1 - mean(1,0,.5) = .5; 0 - mean(1,1,.5) = -5/6; .5 - mean(1,1,0) = -1/6
    np.testing.assert_allclose(adv[1], [0.5, 0.5, -5 / 6, -1 / 6], rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(group_advantages(jnp.ones((1, 5)), estimator="rloo")), 0.0)
    with pytest.raises(ValueError, match="group size >= 2"):
        group_advantages(jnp.ones((2, 1)), estimator="rloo")
    with pytest.raises(ValueError, match="estimator must be one of"):
        group_advantages(jnp.ones((2, 2)), estimator="ppo")


def test_clipped_objective_and_k3_golden():
    ratios = jnp.array([[1.5, 0.5, 1.0, 7.0]])
    old = jnp.log(jnp.array([[0.2, 0.4, 0.3, 0.1]]))
    log_p = old + jnp.log(ratios)
    adv = jnp.array([[1.0, -1.0, 2.0, 5.0]])
    valid = jnp.array([[True, True, True, False]])  # the last token does not count
    loss, m = policy_gradient_loss(log_p, old, adv, valid, clip_eps=0.2)
    # token 0: min(1.5*1, 1.2*1) = 1.2 (clipped); token 1: min(.5*-1, .8*-1) = -.8 (clipped); token 2: 2
    np.testing.assert_allclose(float(loss), -(1.2 - 0.8 + 2.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_fraction"]), 2 / 3, rtol=1e-6)
    # gradients: clipped tokens give none; token 2 gives -A * ratio / 3
    g = jax.grad(lambda lp: policy_gradient_loss(lp, old, adv, valid, clip_eps=0.2)[0])(log_p)
    np.testing.assert_allclose(np.asarray(g), [[0.0, 0.0, -2 / 3, 0.0]], atol=1e-6)
    # per-sample advantages [B] broadcast over tokens
    loss_b, _ = policy_gradient_loss(log_p[:, :3], old[:, :3], jnp.array([2.0]), valid[:, :3], clip_eps=0.2)
    np.testing.assert_allclose(float(loss_b), -(1.2 * 2 + 0.5 * 2 + 2.0) / 3, rtol=1e-6)
    # k3: pi = .5, pi_ref = .25 -> x = log(.5); e^x - x - 1
    k = float(k3_kl(jnp.log(0.5), jnp.log(0.25)))
    np.testing.assert_allclose(k, 0.5 - math.log(0.5) - 1, rtol=1e-6)
    lp = jnp.log(jnp.array([[0.5, 0.5]]))
    ref = jnp.log(jnp.array([[0.25, 0.5]]))
    loss_kl, m = policy_gradient_loss(lp, lp, jnp.zeros((1,)), jnp.ones((1, 2), bool), ref_log_p=ref, kl_coef=0.1)
    np.testing.assert_allclose(float(m["kl"]), k / 2, rtol=1e-6)
    np.testing.assert_allclose(float(loss_kl), 0.1 * k / 2, rtol=1e-6)


def rl_config(**changes):
    base = dict(
        algorithm="grpo",
        total_steps=8,
        sft__steps=3,  # RL from step 3, a batch every 2 updates (3, 5, 7): step 4 lies between two updates
        checkpoint_every=4,
        eval_every=8,
        rl__group_size=4,
        rl__num_problems=2,
        rl__updates_per_batch=2,
        rl__kl_coef=0.1,
        rl__warmup_steps=0,  # the RL rate from the first RL update (a warm-up would start it at 0)
    )
    return tiny_config(**{**base, **changes})


def test_config_validation():
    with pytest.raises(ConfigError, match="group_size must be >= 2 for RLOO"):
        validate(rl_config(algorithm="rloo", rl__group_size=1))
    with pytest.raises(ConfigError, match="clip_eps"):
        validate(rl_config(rl__clip_eps=1.5))


def test_grpo_run_resumes_bit_exactly(tmp_path):
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    summary = train(rl_config(), a, progress=False)
    assert summary["step"] == 8
    # B = A's directory with only the step-4 checkpoint (taken between two updates on one sampled batch)
    shutil.copytree(a, b)
    shutil.rmtree(os.path.join(b, "checkpoints", "8"))
    with Checkpointer(b) as ck:
        assert ck.all_steps() == [4]
    train(rl_config(), b, progress=False)
    params_a, _ = _params(a)
    params_b, steps_b = _params(b)
    assert steps_b == [4, 8]
    _assert_same(params_a, params_b)
    s8a, s8b = _raw_state(a, 8), _raw_state(b, 8)
    _assert_same(s8a["ref_params"], s8b["ref_params"])
    _assert_same(s8a["buffer"], s8b["buffer"])
    # the reference was frozen at the first RL step: the params after the SFT steps, unchanged at steps 4 and 8
    ref = s8a["ref_params"]
    _assert_same(_raw_state(a, 4)["ref_params"], ref)
    _assert_same(_params_after_sft(rl_config()), ref)
    assert not _all_equal(ref, _raw_state(a, 4)["params"]) and not _all_equal(ref, params_a)
    # the stored advantages are the group advantages of the stored responses' rewards, re-scored in Python
    rewards = _rescore(s8a["buffer"]).reshape(2, 4)
    adv = np.asarray(s8a["buffer"]["advantages"]).reshape(2, 4)
    np.testing.assert_allclose(adv, np.asarray(group_advantages(jnp.asarray(rewards), eps=1e-6)), atol=1e-5)
    logged = [json.loads(x) for x in open(os.path.join(a, "metrics.jsonl")) if '"grpo"' in x]
    assert logged[-1]["step"] == 8 and logged[-1]["rl_reward"] == pytest.approx(rewards.mean())


def _rescore(buffer) -> np.ndarray:
    """Each stored row's reward by the Python verifier (1-digit addition: the prompt is ``<bos>a+b=``)."""
    from jaxrl_reason.envs.registry import make

    env = make("addition-v0", num_digits=1)
    tok, out = env.tokenizer, []
    for row, p0, valid in zip(buffer["tokens"], buffer["prompt_length"], buffer["valid"], strict=True):
        a, b = tok.decode([int(x) for x in row[1:p0]]).rstrip("=").split("+")
        text = tok.decode([int(x) for x in row[p0 : p0 + int(valid.sum())]]).split(tok.eos, 1)[0]
        out.append(env.score_text({"a": int(a), "b": int(b)}, text))
    return np.asarray(out, np.float32)


def _all_equal(a, b):
    return all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))


def _params_after_sft(config):
    """The params after the run's SFT steps, computed step by step outside the loop (the reference's value)."""
    from jaxrl_reason import parallel
    from jaxrl_reason.envs.registry import make
    from jaxrl_reason.problems import demonstration_set, run_problems
    from jaxrl_reason.training.imitation import sft_batch
    from jaxrl_reason.training.loop import make_train_fns
    from jaxrl_reason.training.state import build_model, build_optimizer, init_state

    env = make(config.env_id, **dict(config.env_kwargs))
    model, tx = build_model(config, env), build_optimizer(config)
    fns = make_train_fns(config, env, model, tx)
    state = init_state(config, env, model, tx, mesh=fns.mesh)
    init = jax.device_get(state.params)
    data = demonstration_set(env, run_problems(env, config)[0])  # the run's imitation problems
    for step in range(config.sft.steps):
        batch = sft_batch(data, step, config.sft.batch_size, config.seed)
        state, _ = fns.sft_update(state, parallel.host_batch_to_global(batch, fns.batch_shardings(batch)))
    params = jax.device_get(state.params)
    assert not _all_equal(params, init)  # the SFT step moved them
    return params


def _raw_state(workdir, step):
    import orbax.checkpoint as ocp

    return ocp.StandardCheckpointer().restore(os.path.join(workdir, "checkpoints", str(step), "state"))
