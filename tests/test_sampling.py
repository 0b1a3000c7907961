"""Sampling rollouts with the KV cache: greedy == full-forward reference, masks, top-k/top-p, log-probs."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.models.sampling import mask_logits, sample_action
from tests.test_core import Echo
from tests.test_model import random_params

NA = 6


class TwoChoice(jr.TokenEnv):
    """Two-player toy: at buffer length n only actions (n+p)%6 and (2n+p+1)%6 are legal; action 0 ends it.

    Prompts have different lengths (odd problems repeat their token), so rows start at different
    positions; the mover of action 0 gets +1, the other player -1.
    """

    spec = jr.EnvSpec(
        "two-choice-v0", num_actions=NA, vocab_size=8, max_length=10, max_prompt_length=3, num_players=2,
        pad_id=7, bos_id=6, eos_id=None,
    )  # fmt: skip

    def sample_problem(self, key):
        return jax.random.randint(key, (), 0, NA, jnp.int32)

    @staticmethod
    def legal(n, p):
        return (jnp.arange(NA) == (n + p) % NA) | (jnp.arange(NA) == (2 * n + p + 1) % NA)

    def _init(self, p):
        odd = p % 2 == 1
        tokens = jnp.full((10,), 7, jnp.int32).at[0].set(6).at[1].set(p).at[2].set(jnp.where(odd, p, 7))
        length = jnp.where(odd, 3, 2).astype(jnp.int32)
        return jr.EnvState(
            tokens=tokens, length=length, prompt_length=length, current_player=jnp.int32(0),
            legal_action_mask=self.legal(length, p), rewards=jnp.zeros(2), terminated=jnp.bool_(False),
            truncated=jnp.bool_(False), problem=p,
        )  # fmt: skip

    def _step(self, state, action):
        mover = state.current_player
        end = action == 0
        rewards = jnp.where(end, jnp.where(jnp.arange(2) == mover, 1.0, -1.0), 0.0).astype(jnp.float32)
        return state.replace(
            current_player=1 - mover,
            legal_action_mask=self.legal(state.length, state.problem),
            rewards=rewards,
            terminated=end,
        )


ENV = TwoChoice()
MODEL = jr.PolicyValueTransformer(
    jr.TransformerConfig.for_env(ENV.spec, d_model=32, num_heads=4, num_layers=2, mlp_dim=64)
)
B = 64


@functools.cache
def _params():
    return random_params(MODEL)


def _states(env=ENV, b=B, seed=0):
    return jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.key(seed), b))


@functools.cache
def _rollout_fn(env=ENV, model=MODEL, greedy=False):
    """Jitted rollout; temperature/top-k/top-p are traced, so one compilation serves every setting."""

    def fn(params, states, key, temperature=1.0, top_k=NA, top_p=1.0):
        if greedy:
            return jr.rollout(model, params, env, states, key, greedy=True)
        return jr.rollout(model, params, env, states, key, temperature=temperature, top_k=top_k, top_p=top_p)

    return jax.jit(fn)


@functools.cache
def _jitted_apply(model):
    return jax.jit(model.apply)


@functools.cache
def _reference_step(model, env):
    """One step of the reference: full forward over the whole buffer, greedy legal action, env.step."""

    def step(params, states):
        rows = jnp.arange(states.tokens.shape[0])
        logits, vals = model.apply(params, states.tokens)
        last = states.length - 1
        masked = mask_logits(logits[rows, last], states.legal_action_mask)
        a = jnp.argmax(masked, -1).astype(jnp.int32)
        live = ~states.done
        out = (
            jnp.where(live, a, env.spec.pad_id),
            jnp.where(live, vals[rows, last], 0.0),
            jnp.where(live, jax.nn.log_softmax(masked)[rows, a], 0.0),
            live,
        )
        return jax.vmap(env.step)(states, a), out

    return jax.jit(step)


def _reference_greedy(model, params, env, states):
    """Step by step without a cache (a Python loop over full forwards)."""
    step, outs = _reference_step(model, env), []
    for _ in range(env.spec.max_response_length):
        states, out = step(params, states)
        outs.append(out)
    return states, *(np.stack(x, 1) for x in zip(*outs, strict=True))


def test_greedy_rollout_is_deterministic_and_equals_full_forward_reference():
    params, states = _params(), _states()
    fn = _rollout_fn(greedy=True)
    traj = fn(params, states, jax.random.key(1))
    again = fn(params, states, jax.random.key(2))  # greedy ignores the key
    np.testing.assert_array_equal(traj.tokens, again.tokens)
    final, actions, values, log_probs, valid = _reference_greedy(MODEL, params, ENV, states)
    np.testing.assert_array_equal(traj.actions, actions)
    np.testing.assert_array_equal(traj.valid, valid)
    np.testing.assert_array_equal(traj.tokens, final.tokens)
    np.testing.assert_allclose(traj.values, values, atol=1e-5)
    np.testing.assert_allclose(traj.log_probs, log_probs, atol=1e-5)
    # shapes, players alternate, ragged prompts, episodes of different lengths
    t = ENV.spec.max_response_length
    assert traj.actions.shape == traj.players.shape == traj.valid.shape == (B, t) and traj.rewards.shape == (B, t, 2)
    assert len(set(np.asarray(states.length).tolist())) == 2
    assert 0 < int(traj.valid.sum()) < B * t
    players, live = np.asarray(traj.players), np.asarray(traj.valid)
    np.testing.assert_array_equal(players[:, 1:][live[:, 1:]], 1 - players[:, :-1][live[:, 1:]])
    np.testing.assert_array_equal(np.asarray(traj.rewards)[~live], 0.0)
    np.testing.assert_allclose(traj.returns.sum(-1), 0.0)  # zero-sum


def test_greedy_rollout_on_a_reasoning_task():
    env = Echo()
    model = jr.PolicyValueTransformer(
        jr.TransformerConfig.for_env(env.spec, d_model=32, num_heads=2, num_layers=1, mlp_dim=64)
    )
    params = random_params(model, seed=3)
    states = _states(env, 8)
    traj = _rollout_fn(env, model, greedy=True)(params, states, jax.random.key(0))
    final, actions, values, _, valid = _reference_greedy(model, params, env, states)
    np.testing.assert_array_equal(traj.actions, actions)
    np.testing.assert_array_equal(traj.valid, valid)
    np.testing.assert_allclose(traj.values, values, atol=1e-5)
    np.testing.assert_array_equal(traj.final_state.rewards, final.rewards)


def test_masked_actions_are_never_sampled_and_log_probs_match_a_full_forward():
    params, states = _params(), _states()
    traj = _rollout_fn()(params, states, jax.random.key(7), 3.0)
    valid = np.asarray(traj.valid)
    seen = set()
    n0 = np.asarray(states.length)
    for b, t in zip(*np.nonzero(valid), strict=True):
        legal = np.asarray(TwoChoice.legal(n0[b] + t, states.problem[b]))
        a = int(traj.actions[b, t])
        assert legal[a], (b, t, a)
        seen.add((int(legal.sum()), a))
    assert len({a for _, a in seen}) == NA  # every action occurs somewhere (sampling is not degenerate)
    # recompute: one full forward over the final tokens, masks rebuilt from the env's rule
    logits, values = _jitted_apply(MODEL)(params, traj.tokens)
    t_idx = np.arange(ENV.spec.max_response_length)
    pos = n0[:, None] + t_idx[None] - 1  # prediction for step t sits at prompt_length + t - 1
    pos = np.minimum(pos, ENV.spec.max_length - 1)
    rows = np.arange(B)[:, None]
    masks = jax.vmap(jax.vmap(TwoChoice.legal, (0, None)))(jnp.asarray(pos + 1), states.problem)
    lp = jax.nn.log_softmax(mask_logits(logits[rows, pos], masks))
    want = np.take_along_axis(np.asarray(lp), np.asarray(traj.actions)[..., None] % NA, -1)[..., 0]
    np.testing.assert_allclose(traj.log_probs[valid], want[valid], atol=1e-5)
    np.testing.assert_allclose(traj.values[valid], np.asarray(values)[rows, pos][valid], atol=1e-5)


def test_top_k_1_and_tiny_top_p_equal_greedy():
    params, states = _params(), _states()
    greedy = _rollout_fn(greedy=True)(params, states, jax.random.key(0))
    top1 = _rollout_fn()(params, states, jax.random.key(4), 2.0, 1, 1.0)
    np.testing.assert_array_equal(top1.actions, greedy.actions)
    nucleus = _rollout_fn()(params, states, jax.random.key(5), 2.0, NA, 1e-6)
    np.testing.assert_array_equal(nucleus.actions, greedy.actions)
    sampled = _rollout_fn()(params, states, jax.random.key(5), 2.0, NA, 1.0)
    assert not np.array_equal(sampled.actions, greedy.actions)
    logits = jax.random.normal(jax.random.key(0), (512, NA))
    nucleus = sample_action(jax.random.key(1), logits, top_p=1e-6)
    np.testing.assert_array_equal(nucleus, jnp.argmax(logits, -1))


def test_sample_action_top_k_top_p_and_masks_by_counting():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]] * 4000))
    keys = jax.random.split(jax.random.key(0), 4)
    # top-k=2: only the two best, renormalised
    a = np.asarray(sample_action(keys[0], logits, top_k=2))
    assert set(a.tolist()) == {0, 1} and abs((a == 0).mean() - 0.5 / 0.8) < 0.03
    # top-p=0.7: {0.5, 0.3} reach 0.8 >= 0.7, so action 2 and 3 are cut
    a = np.asarray(sample_action(keys[1], logits, top_p=0.7))
    assert set(a.tolist()) == {0, 1}
    # masked logits are never drawn even at a high temperature
    masked = mask_logits(logits, jnp.array([False, True, False, True]))
    a = np.asarray(sample_action(keys[2], masked, temperature=10.0))
    assert set(a.tolist()) == {1, 3}
    with pytest.raises(ValueError, match="temperature"):
        sample_action(keys[3], logits, temperature=0.0)
    with pytest.raises(ValueError, match="top_p"):
        sample_action(keys[3], logits, top_p=1.5)


def test_rollout_rejects_a_mismatched_model():
    small = jr.PolicyValueTransformer(dataclasses.replace(MODEL.config, max_length=4))
    with pytest.raises(ValueError, match="shorter than env max_length"):
        jr.rollout(small, _params(), ENV, _states(), jax.random.key(0))
    with pytest.raises(ValueError, match="num_actions"):
        jr.rollout(dataclasses.replace(MODEL, config=dataclasses.replace(MODEL.config, num_actions=5)), _params(),
                   ENV, _states(), jax.random.key(0))  # fmt: skip


def test_rollout_with_the_batch_sharded_over_devices_equals_unsharded():
    params, states = _params(), _states()
    mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    data = jax.NamedSharding(mesh, jax.P("data"))
    sharded_states = jax.device_put(states, data)
    fn = _rollout_fn()
    want = fn(params, states, jax.random.key(3), 1.5)
    got = fn(params, sharded_states, jax.random.key(3), 1.5)
    assert got.actions.sharding.spec[0] == "data" or len(jax.devices()) == 1
    np.testing.assert_array_equal(got.actions, want.actions)
    np.testing.assert_allclose(got.log_probs, want.log_probs, atol=1e-5)
