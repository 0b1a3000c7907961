"""Collection with a bounded parameter lag (rl.max_lag) and GRPO's off-policy correction: the ring's
semantics, hand-computed importance weights and loss, lagged collections equal lock-step collections with the
older params, and a lagged run resumes bit for bit after kill -9."""

import json
import os
import subprocess
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.grpo import policy_gradient_loss, token_log_probs, truncated_importance_weights
from jaxrl_reason.config import ConfigError, apply_overrides
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.training.lag import behaviour_params, init_actor
from jaxrl_reason.training.loop import KILL_AT_STEP_ENV, train
from jaxrl_reason.training.state import TrainState
from tests.test_grpo import _raw_state, rl_config
from tests.test_train import ROOT, _assert_same, _params, fresh_train_fns


def lag_config(**changes):
    return rl_config(**{"rl__max_lag": 1, **changes})


def test_truncated_importance_weights_and_decoupled_loss_golden():
    behaviour = np.log(np.array([[0.5, 0.1, 0.4, 0.2]], np.float32))
    prox = np.log(np.array([[0.25, 0.3, 0.4, 0.9]], np.float32))  # pi_prox / mu = .5, 3, 1, 4.5
    ratio = np.array([[1.5, 0.5, 1.0, 1.1]], np.float32)  # pi_theta / pi_prox
    log_p = prox + np.log(ratio)
    adv = np.array([[1.0, -1.0, 2.0, 5.0]], np.float32)
    valid = np.array([[True, True, True, False]])
    w = np.asarray(truncated_importance_weights(jnp.asarray(prox), jnp.asarray(behaviour), is_cap=2.0))
    np.testing.assert_allclose(w, [[0.5, 2.0, 1.0, 2.0]], rtol=1e-6)
    args = (jnp.asarray(log_p), jnp.asarray(prox), jnp.asarray(adv), jnp.asarray(valid))
    loss, m = policy_gradient_loss(*args, clip_eps=0.2, behaviour_log_p=jnp.asarray(behaviour), is_cap=2.0)
    # surrogates min(r A, clip(r, .8, 1.2) A): 1.2, -.8, 2 (the 4th token is not valid); weighted .6, -1.6, 2
    np.testing.assert_allclose(float(loss), -(0.5 * 1.2 - 2.0 * 0.8 + 1.0 * 2.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["is_weight"]), (0.5 + 2.0 + 1.0) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["is_truncated"]), 1 / 3, rtol=1e-6)  # token 1 (token 3 is not valid)
    # the same in numpy, from the definitions
    w_np = np.minimum(np.exp(prox - behaviour), 2.0)
    r_np = np.exp(log_p - prox)
    s_np = np.minimum(r_np * adv, np.clip(r_np, 0.8, 1.2) * adv)
    np.testing.assert_allclose(float(loss), -(w_np * s_np)[valid].mean(), rtol=1e-5)
    # gradients: only through pi_theta; clipped tokens give none; token 2 gives -w A r / 3
    grads = jax.grad(
        lambda lp, old, mu: policy_gradient_loss(lp, old, args[2], args[3], behaviour_log_p=mu, is_cap=2.0)[0],
        argnums=(0, 1, 2),
    )(args[0], args[1], jnp.asarray(behaviour))
    np.testing.assert_allclose(np.asarray(grads[0]), [[0.0, 0.0, -1.0 * 2.0 * 1.0 / 3, 0.0]], atol=1e-6)
    assert not np.asarray(grads[1]).any() and not np.asarray(grads[2]).any()
    # the k3 KL term is weighted the same way
    ref = prox - 0.5
    _, mk = policy_gradient_loss(*args, behaviour_log_p=jnp.asarray(behaviour), ref_log_p=jnp.asarray(ref), kl_coef=1)
    x = ref - log_p
    np.testing.assert_allclose(float(mk["kl"]), (w_np * (np.exp(x) - x - 1))[valid].mean(), rtol=1e-5)
    with pytest.raises(ValueError, match="is_cap"):
        truncated_importance_weights(jnp.asarray(prox), jnp.asarray(behaviour), is_cap=0.0)


def test_bad_lag_settings_are_one_clear_error():
    with pytest.raises(ConfigError, match="'rl.max_lag' must be >= 0"):
        lag_config(rl__max_lag=-1)
    with pytest.raises(ConfigError, match="'rl.is_cap' must be > 0"):
        lag_config(rl__is_cap=0.0)
    with pytest.raises(ConfigError, match="'rl.max_lag' expects an int, got '1.5'"):
        apply_overrides(lag_config(), ["rl.max_lag=1.5"])


def test_the_ring_samples_with_the_params_of_k_collections_earlier():
    # params = the step they were taken at; RL from step 2, a collection every 2 updates, k = 3
    k, start = 3, 2
    state = TrainState(
        params=jnp.float32(0),
        opt_state=None,
        step=jnp.int32(start),
        key=None,
        buffer={},
        buffer_count=jnp.int32(0),
        actor=init_actor(types.SimpleNamespace(rl=types.SimpleNamespace(max_lag=k)), jnp.float32(-1)),
    )
    used, staleness = [], []
    for c in range(6):
        step = start + 2 * c
        state = state.replace(params=jnp.float32(step), step=jnp.int32(step))
        params, state, metrics = behaviour_params(state, start)
        used.append(int(params))
        staleness.append(int(metrics["rl_staleness"]))
    # collection c samples with collection max(c - k, 0)'s params: the first k with the params at RL start
    assert used == [2, 2, 2, 2, 4, 6]
    assert staleness == [0, 2, 4, 6, 6, 6]  # k * updates_per_batch once the ring is full
    assert init_actor(types.SimpleNamespace(rl=types.SimpleNamespace(max_lag=0)), jnp.float32(0)) is None


def test_a_checkpoint_of_another_lag_is_refused_with_one_clear_error(tmp_path):
    from jaxrl_reason.training.warm_start import restore

    def state(k):
        config = types.SimpleNamespace(rl=types.SimpleNamespace(max_lag=k))
        params = {"w": jnp.ones((2,), jnp.float32)}
        return TrainState(
            params, {}, jnp.int32(1), jnp.zeros((2,), jnp.uint32), {}, jnp.int32(0), None, init_actor(config, params)
        )

    for saved, others in ((0, (1, 2)), (1, (0, 2))):
        workdir = str(tmp_path / str(saved))
        with Checkpointer(workdir) as ckpt:
            ckpt.save(1, state(saved), {})
        for k in others:
            with Checkpointer(workdir) as ckpt, pytest.raises(ConfigError, match="laid out for other settings"):
                restore(ckpt, state(k), workdir)
        with Checkpointer(workdir) as ckpt:
            assert (restore(ckpt, state(saved), workdir).actor is None) == (saved == 0)


def _forward_log_probs(model, params, buffer):
    """``log pi(a_t)`` of the stored actions from one full forward of `params` (not the rollout's decode)."""
    log_probs = lambda p, b: token_log_probs(model.apply(p, b["tokens"])[0], b["prompt_length"], b["actions"])
    return np.asarray(jax.jit(log_probs)(params, jax.device_get(buffer)))


def test_lagged_grpo_collections_use_the_older_params_and_lag_zero_keeps_the_layout():
    _, model, fns0, s0 = fresh_train_fns(rl_config(sft__steps=0))  # RL from step 0
    _, _, fns1, s1 = fresh_train_fns(lag_config(sft__steps=0))
    assert s0.actor is None and "prox_log_probs" not in s0.buffer  # lag 0: today's state layout
    assert len(s1.actor["params"]) == 1 and "prox_log_probs" in s1.buffer
    # the first collection: the same params as lock-step, so the same batch
    a0, _ = fns0.collect(s0)
    a1, m1 = fns1.collect(s1)
    for key in a0.buffer:
        np.testing.assert_array_equal(np.asarray(a0.buffer[key]), np.asarray(a1.buffer[key]), err_msg=key)
    assert float(m1["rl_staleness"]) == 0
    host = jax.device_get(a1)
    snapshot = host.params
    _assert_same(host.actor["params"][0], snapshot)
    # the next collection (step 2), after the learner moved the params: it samples with the snapshot, the batch
    # lock-step collection would sample from the snapshot
    now = _moved(snapshot, 0.05)
    b1, mb = fns1.collect(jax.tree.map(jnp.asarray, host.replace(step=np.int32(2), params=now)))
    assert float(mb["rl_staleness"]) == 2
    lock_step = host.replace(
        step=np.int32(2), actor=None, buffer={k: v for k, v in host.buffer.items() if k != "prox_log_probs"}
    )
    r0, _ = fns0.collect(jax.tree.map(jnp.asarray, lock_step))
    for key in r0.buffer:
        np.testing.assert_array_equal(np.asarray(r0.buffer[key]), np.asarray(b1.buffer[key]), err_msg=key)
    # ... and against full forwards: behaviour log-probs are the snapshot's, proximal ones the current params'
    valid = np.asarray(b1.buffer["valid"])
    old_lp = _forward_log_probs(model, snapshot, b1.buffer)[valid]
    now_lp = _forward_log_probs(model, now, b1.buffer)[valid]
    np.testing.assert_allclose(np.asarray(b1.buffer["log_probs"])[valid], old_lp, atol=1e-4)
    np.testing.assert_allclose(np.asarray(b1.buffer["prox_log_probs"])[valid], now_lp, atol=1e-5)
    assert np.abs(old_lp - now_lp).max() > 1e-2  # the test can tell the two apart
    _assert_same(b1.actor["params"][0], now)


def _moved(params, scale):
    """`params` + `scale` * a fixed +-1 pattern (the learner's params some updates later)."""
    return jax.tree.map(
        lambda x: (x + scale * np.sign(np.cos(np.arange(x.size))).reshape(x.shape)).astype(x.dtype), params
    )


@pytest.mark.parametrize("algorithm", ["star", "alphazero"])
def test_lagged_star_and_alphazero_sample_with_the_ring_not_the_current_params(algorithm):
    config = lag_config(algorithm=algorithm, sft__steps=0, rl__kl_coef=0.0)
    _, _, fns, state = fresh_train_fns(config)
    old = jax.device_get(state.params)
    noisy = _moved(old, 0.5)
    ring = lambda p: {"params": (jax.tree.map(jnp.asarray, p),), "step": jnp.zeros((1,), jnp.int32)}
    host = jax.device_get(state)  # every collect donates its state: each call gets a fresh copy

    def at(params, snapshot):
        fresh = jax.tree.map(jnp.asarray, host)
        return fresh.replace(step=jnp.int32(2), params=jax.tree.map(jnp.asarray, params), actor=ring(snapshot))

    a, m = fns.collect(at(noisy, old))  # a later collection (not the first: the ring is not refilled)
    assert float(m["rl_staleness"]) == 2
    _assert_same(a.actor["params"][0], noisy)  # the current params go into the ring
    # other current params (far from the noisy ones), the same snapshot: the same batch
    b, _ = fns.collect(at(old, old))
    _assert_same(jax.device_get(a.buffer), jax.device_get(b.buffer))


CONFIG_FILE = """
import sys
sys.path.insert(0, {root!r})
from tests.test_lag import lag_config
def get_config():
    return lag_config(**{changes!r})
"""

#: RL from step 0, batches at steps 0, 2, 4; the step-3 checkpoint lies between two updates on one batch
RESUME = dict(sft__steps=0, total_steps=6, checkpoint_every=3, eval_every=6)


def test_lagged_grpo_is_deterministic_and_resumes_bit_exactly_after_kill(tmp_path):
    cfg_path = tmp_path / "lag.py"
    cfg_path.write_text(CONFIG_FILE.format(root=ROOT, changes=RESUME))
    # B: another process, SIGKILLed right after its step-3 checkpoint
    env = {**os.environ, KILL_AT_STEP_ENV: "3", "PYTHONPATH": ROOT}
    cmd = [sys.executable, "-m", "jaxrl_reason.train", "--config", str(cfg_path), "--workdir", str(tmp_path / "b")]
    proc = subprocess.run([*cmd, "--no-progress"], env=env, capture_output=True, timeout=600, cwd=ROOT)
    assert proc.returncode == -9, proc.stderr.decode()[-3000:]
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train(lag_config(**RESUME), a, progress=False)  # A: uninterrupted, in this process
    _assert_same(_raw_state(a, 3), _raw_state(b, 3))  # two processes, same seed: the same state (ring included)
    train(lag_config(**RESUME), b, progress=False)
    with Checkpointer(b) as ck:
        assert ck.all_steps() == [3, 6]
    _assert_same(_params(a)[0], _params(b)[0])
    s6a, s6b = _raw_state(a, 6), _raw_state(b, 6)
    _assert_same(s6a, s6b)
    # the ring holds the params of the last collection (step 4); that batch was sampled with step 2's
    assert list(np.asarray(s6a["actor"]["step"])) == [4]
    logged = [json.loads(x) for x in open(os.path.join(a, "metrics.jsonl")) if '"grpo"' in x]
    assert [r["rl_staleness"] for r in logged] == [0, 0, 2, 2, 2, 2]  # steps 1..6: batches of steps 0, 2, 4
    assert all("is_weight" in r and "is_truncated" in r for r in logged)
    # the first batch was sampled with the current params: weights 1 (up to cached vs full forward)
    assert logged[0]["is_weight"] == pytest.approx(1.0, abs=1e-3) and logged[0]["is_truncated"] == 0
    # the first update on a lagged batch: the params are the proximal ones, so the PPO ratio is 1
    assert logged[2]["ratio"] == pytest.approx(1.0, abs=1e-5)
