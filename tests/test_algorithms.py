"""Losses against hand-computed values on tiny batches."""

import math

import jax.numpy as jnp
import numpy as np

from jaxrl_reason.algorithms.alphazero import alphazero_loss, value_targets
from jaxrl_reason.algorithms.sft import response_targets, sft_loss
from jaxrl_reason.models import two_hot
from jaxrl_reason.types import Trajectory


def test_sft_targets_cover_exactly_the_response():
    tokens = jnp.array([[1, 9, 5, 6, 2, 0]])  # bos, prompt, r, r, eos, pad
    targets, mask = response_targets(tokens, jnp.array([2]), jnp.array([5]))
    np.testing.assert_array_equal(targets, [[9, 5, 6, 2, 0]])
    np.testing.assert_array_equal(mask, [[False, True, True, True, False]])


def test_sft_loss_golden_value():
    tokens = jnp.array([[1, 0, 2, 3, 0]])  # prompt [1, 0]; response [2, 3]
    logits = jnp.zeros((1, 5, 4)).at[0, 1, 2].set(math.log(3.0))  # p(2 | pos 1) = 3/6
    loss, metrics = sft_loss(logits, tokens, jnp.array([2]), jnp.array([4]))
    np.testing.assert_allclose(loss, (math.log(2) + math.log(4)) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["token_accuracy"], 0.5)  # argmax right at pos 1 only


def _traj(players, valid, returns, policy, prompt_length=1, length=6, num_actions=4):
    B, T = players.shape
    rewards = np.zeros((B, T, returns.shape[1]), np.float32)
    rewards[:, -1] = returns
    return Trajectory(
        tokens=jnp.zeros((B, length), jnp.int32),
        prompt_length=jnp.full((B,), prompt_length, jnp.int32),
        actions=jnp.zeros((B, T), jnp.int32),
        log_probs=jnp.zeros((B, T)),
        values=jnp.zeros((B, T)),
        rewards=jnp.asarray(rewards),
        players=jnp.asarray(players, jnp.int32),
        valid=jnp.asarray(valid),
        final_state=(),
        policy=jnp.asarray(policy, jnp.float32),
    )


def test_value_targets_are_the_outcome_of_the_player_to_move():
    traj = _traj(np.array([[0, 1, 0]]), np.ones((1, 3), bool), np.array([[1.0, -1.0]]), np.zeros((1, 3, 4)))
    np.testing.assert_array_equal(value_targets(traj), [[1.0, -1.0, 1.0]])


def test_alphazero_loss_golden_value():
    pi = np.zeros((1, 3, 4), np.float32)
    pi[..., :2] = 0.5  # search policy: half on actions 0 and 1
    valid = np.array([[True, True, False]])  # the last step is padding and must not count
    traj = _traj(np.array([[0, 1, 0]]), valid, np.array([[1.0, -1.0]]), pi)
    logits = jnp.zeros((1, 6, 4))  # uniform policy -> CE = log 4 per step
    values = jnp.zeros((1, 6)).at[0, 0].set(0.5)  # step 0 predicted at position prompt_length-1 = 0
    loss, m = alphazero_loss(logits, values, traj, value_weight=2.0)
    value_loss = ((0.5 - 1.0) ** 2 + (0.0 + 1.0) ** 2) / 2
    np.testing.assert_allclose(m["policy_loss"], math.log(4), rtol=1e-6)
    np.testing.assert_allclose(m["value_loss"], value_loss, rtol=1e-6)
    np.testing.assert_allclose(loss, math.log(4) + 2.0 * value_loss, rtol=1e-6)
    np.testing.assert_allclose(m["policy_kl"], math.log(4) - math.log(2), rtol=1e-6)


def test_alphazero_categorical_value_loss_is_two_hot_cross_entropy():
    pi = np.full((1, 2, 4), 0.25, np.float32)
    traj = _traj(np.array([[0, 0]]), np.ones((1, 2), bool), np.array([[1.0]]), pi)
    bins = 5
    value_logits = jnp.zeros((1, 6, bins))  # uniform over bins -> CE = log(bins) for any target
    _, m = alphazero_loss(jnp.zeros((1, 6, 4)), jnp.zeros((1, 6)), traj, value_logits=value_logits)
    np.testing.assert_allclose(m["value_loss"], math.log(bins), rtol=1e-6)
    np.testing.assert_allclose(two_hot(jnp.array([1.0]), bins)[0, -1], 1.0)


def test_value_warmup_weight_drops_the_policy_term():
    pi = np.zeros((1, 2, 4), np.float32)
    pi[..., 0] = 1.0
    traj = _traj(np.array([[0, 0]]), np.ones((1, 2), bool), np.array([[1.0]]), pi)
    loss, m = alphazero_loss(jnp.zeros((1, 6, 4)), jnp.zeros((1, 6)), traj, policy_weight=0.0)
    np.testing.assert_allclose(m["policy_loss"], math.log(4), rtol=1e-6)  # still reported
    np.testing.assert_allclose(loss, m["value_loss"], rtol=1e-6)  # but not optimized


def test_value_target_mix_blends_outcome_and_root_value():
    pi = np.full((1, 2, 4), 0.25, np.float32)
    traj = _traj(np.array([[0, 1]]), np.ones((1, 2), bool), np.array([[1.0, -1.0]]), pi)
    traj = traj.replace(values=jnp.array([[0.2, 0.6]]))  # the search's root values, mover's view
    np.testing.assert_allclose(value_targets(traj, 0.25), [[0.75 * 1 + 0.25 * 0.2, 0.75 * -1 + 0.25 * 0.6]], rtol=1e-6)
    np.testing.assert_array_equal(value_targets(traj, 0.0), [[1.0, -1.0]])
    _, m = alphazero_loss(jnp.zeros((1, 6, 4)), jnp.zeros((1, 6)), traj, value_target_mix=1.0)
    np.testing.assert_allclose(m["value_loss"], (0.2**2 + 0.6**2) / 2, rtol=1e-6)  # target = q alone
