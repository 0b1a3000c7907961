"""GRPO options (DAPO, Dr. GRPO, dense process rewards) against values worked out by hand on tiny arrays."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.grpo import (
    aggregate_loss,
    group_advantages,
    group_rows,
    informative_groups,
    k3_kl,
    policy_gradient_loss,
    process_advantages,
    select_informative_groups,
)


def test_dr_grpo_advantages_center_without_std_scaling():
    adv = np.asarray(group_advantages(jnp.array([[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5]]), estimator="dr_grpo"))
    np.testing.assert_allclose(adv[0], [0.75, -0.25, -0.25, -0.25], rtol=1e-6)  # mean .25; GRPO would divide by .433
    np.testing.assert_array_equal(adv[1], 0.0)


def _ratio_batch(ratios, old_probs):
    old = jnp.log(jnp.array(old_probs))
    return old + jnp.log(jnp.array(ratios)), old


def test_clip_higher_is_asymmetric():
    log_p, old = _ratio_batch([[1.25, 0.75, 1.1]], [[0.2, 0.4, 0.3]])
    adv = jnp.array([[1.0, -1.0, 1.0]])
    valid = jnp.ones((1, 3), bool)
    loss_fn = lambda lp, **kw: policy_gradient_loss(lp, old, adv, valid, **kw)
    loss, m = loss_fn(log_p, clip_eps_low=0.2, clip_eps_high=0.28)
    # token 0: 1.25 < 1.28, not clipped -> 1.25; token 1: min(-.75, .8 * -1) = -.8 (clipped low); token 2: 1.1
    np.testing.assert_allclose(float(loss), -(1.25 - 0.8 + 1.1) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m["clip_fraction"]), 1 / 3, rtol=1e-6)  # only token 1 is outside [.8, 1.28]
    # symmetric 0.2 (the default path) clips token 0 at 1.2
    loss_sym, m_sym = loss_fn(log_p, clip_eps=0.2)
    np.testing.assert_allclose(float(loss_sym), -(1.2 - 0.8 + 1.1) / 3, rtol=1e-6)
    np.testing.assert_allclose(float(m_sym["clip_fraction"]), 2 / 3, rtol=1e-6)
    # only the high side given: the low side falls back to clip_eps
    np.testing.assert_allclose(float(loss_fn(log_p, clip_eps_high=0.28)[0]), float(loss), rtol=1e-7)
    # gradient -A * ratio / 3 on unclipped tokens, 0 on the clipped one
    g = jax.grad(lambda lp: loss_fn(lp, clip_eps_low=0.2, clip_eps_high=0.28)[0])(log_p)
    np.testing.assert_allclose(np.asarray(g), [[-1.25 / 3, 0.0, -1.1 / 3]], rtol=1e-5)
    with pytest.raises(ValueError, match="clip range"):
        loss_fn(log_p, clip_eps_low=1.0)


# ratio 1 everywhere, so the surrogate equals the advantage: row 0 has 3 valid tokens (1, 2, 3), row 1 one (4),
# row 2 none (its 9s must not count anywhere).
_ADV = jnp.array([[1.0, 2.0, 3.0, 9.0], [4.0, 9.0, 9.0, 9.0], [9.0, 9.0, 9.0, 9.0]])
_VALID = jnp.array([[True, True, True, False], [True, False, False, False], [False] * 4])


@pytest.mark.parametrize(
    "kw, expected",
    [
        (dict(), (1 + 2 + 3 + 4) / 4),  # token: 10 / 4 valid tokens
        (dict(loss_agg="token"), 2.5),
        (dict(loss_agg="sequence"), (2.0 + 4.0) / 2),  # per-row means 2 and 4; the empty row is left out
        (dict(loss_agg="constant"), 10 / (3 * 4)),  # B = 3 rows, max_tokens defaults to T = 4
        (dict(loss_agg="constant", max_tokens=5), 10 / (3 * 5)),
    ],
)
def test_loss_aggregation(kw, expected):
    zeros = jnp.zeros(_ADV.shape)
    loss, _ = policy_gradient_loss(zeros, zeros, _ADV, _VALID, **kw)
    np.testing.assert_allclose(float(loss), -expected, rtol=1e-6)
    np.testing.assert_allclose(float(aggregate_loss(_ADV, _VALID, **kw)), expected, rtol=1e-6)


def test_loss_aggregation_gradients_and_errors():
    zeros = jnp.zeros(_ADV.shape)
    grad = lambda **kw: np.asarray(jax.grad(lambda lp: policy_gradient_loss(lp, zeros, _ADV, _VALID, **kw)[0])(zeros))
    # sequence: d/dlp of -A/(n_b * 2 rows); Dr. GRPO constant: -A / (3 * 5) whatever the row's length
    np.testing.assert_allclose(grad(loss_agg="sequence")[:2], [[-1 / 6, -2 / 6, -3 / 6, 0], [-2, 0, 0, 0]], rtol=1e-6)
    np.testing.assert_allclose(grad(loss_agg="constant", max_tokens=5), np.where(_VALID, -_ADV / 15, 0.0), rtol=1e-6)
    assert float(aggregate_loss(_ADV, jnp.zeros_like(_VALID), loss_agg="sequence")) == 0.0
    with pytest.raises(ValueError, match="loss_agg must be one of"):
        aggregate_loss(_ADV, _VALID, loss_agg="mean")
    with pytest.raises(ValueError, match="max_tokens"):
        aggregate_loss(_ADV, _VALID, max_tokens=4)  # only meaningful with "constant"


def test_kl_term_uses_the_same_aggregation():
    lp = jnp.log(jnp.array([[0.5, 0.5], [0.5, 0.5]]))
    ref = jnp.log(jnp.array([[0.25, 0.5], [0.25, 0.5]]))
    valid = jnp.array([[True, True], [True, False]])
    k = float(k3_kl(jnp.log(0.5), jnp.log(0.25)))  # token 1 of each row has kl 0
    kl = lambda **kw: float(policy_gradient_loss(lp, lp, jnp.zeros(2), valid, ref_log_p=ref, **kw)[1]["kl"])
    np.testing.assert_allclose(kl(), 2 * k / 3, rtol=1e-6)  # (k + 0 + k) / 3 tokens
    np.testing.assert_allclose(kl(loss_agg="sequence"), (k / 2 + k) / 2, rtol=1e-6)
    np.testing.assert_allclose(kl(loss_agg="constant"), 2 * k / 4, rtol=1e-6)


_CANDIDATES = jnp.array([[1.0, 1.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.3, 0.3, 0.3]])


def test_informative_groups_and_selection():
    np.testing.assert_array_equal(informative_groups(_CANDIDATES), [False, True, False, True, False])
    idx, n = select_informative_groups(_CANDIDATES, 3)
    np.testing.assert_array_equal(idx, [1, 3, 0])  # informative in order, then refilled with the first other
    assert int(n) == 2
    idx, n = jax.jit(select_informative_groups, static_argnums=1)(_CANDIDATES, 1)
    np.testing.assert_array_equal(idx, [1])
    assert int(n) == 2  # counts all candidates, not only the kept ones
    # all informative: the first num_keep in candidate order
    idx, n = select_informative_groups(jnp.array([[0.0, 1.0]] * 4), 2)
    np.testing.assert_array_equal(idx, [0, 1])
    assert int(n) == 4
    with pytest.raises(ValueError, match="num_keep"):
        select_informative_groups(_CANDIDATES, 6)


def test_group_rows_picks_whole_groups_of_a_flat_batch():
    np.testing.assert_array_equal(group_rows(jnp.array([1, 3]), 3), [3, 4, 5, 9, 10, 11])
    # the documented recipe: oversampled flat rewards [M*G] -> kept rows -> advantages of the kept groups
    flat = _CANDIDATES.reshape(-1)
    idx, n = select_informative_groups(_CANDIDATES, 2)
    kept = flat[group_rows(idx, 3)].reshape(2, 3)
    np.testing.assert_array_equal(kept, [[0, 1, 0], [1, 0, 0]])
    assert bool((group_advantages(kept) != 0).any(axis=1).all())


# Process rewards: one group (G = 2) of two rows, T = 4.
# row 0: steps end at t=1 (reward 1) and t=3 (reward 0); all 4 tokens valid.
# row 1: steps end at t=0 (reward 1) and t=2 (reward 1); t=3 is invalid (its step end and reward 5 are ignored).
_STEP_R = jnp.array([[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 1.0, 5.0]])
_STEP_END = jnp.array([[False, True, False, True], [True, False, True, True]])
_STEP_VALID = jnp.array([[True, True, True, True], [True, True, True, False]])


def test_process_advantages_return_to_go():
    adv = process_advantages(_STEP_R, _STEP_END, _STEP_VALID, group_size=2)
    # row 0: t0, t1 see both steps (1 + 0), t2, t3 the last (0); row 1: 1 + 1, then 1, 1, invalid
    np.testing.assert_allclose(adv, [[1, 1, 0, 0], [2, 1, 1, 0]])
    adv = process_advantages(_STEP_R, _STEP_END, _STEP_VALID, group_size=2, outcome=jnp.array([1.0, 0.0]))
    np.testing.assert_allclose(adv, [[2, 2, 1, 1], [2, 1, 1, 0]])  # outcome on every valid token


def test_process_advantages_group_normalized_deepseekmath():
    # the group's step rewards {1, 0, 1, 1}: mean .75, population std sqrt(.75 * .25) = sqrt(3)/4,
    # so a reward of 1 -> .25 / (sqrt(3)/4) = 1/sqrt(3) and 0 -> -.75 / (sqrt(3)/4) = -sqrt(3)
    s = math.sqrt(3.0)
    want = [[1 / s - s, 1 / s - s, -s, -s], [2 / s, 1 / s, 1 / s, 0.0]]
    adv = process_advantages(_STEP_R, _STEP_END, _STEP_VALID, group_size=2, normalize="group")
    np.testing.assert_allclose(adv, want, rtol=1e-5)
    # a second group whose rewards are all shifted by 10 normalises to the same advantages: groups are separate
    two = process_advantages(
        jnp.concatenate([_STEP_R, _STEP_R + 10.0]),
        jnp.concatenate([_STEP_END, _STEP_END]),
        jnp.concatenate([_STEP_VALID, _STEP_VALID]),
        group_size=2,
        normalize="group",
    )
    np.testing.assert_allclose(two, want + want, rtol=1e-5)


def test_process_advantages_normalized_per_step_index():
    # first steps: rewards 1 (row 0) and 1 (row 1) -> both 0; second steps: 0 and 1 -> mean .5, std .5 -> -1, +1
    fn = jax.jit(lambda r, e, v: process_advantages(r, e, v, group_size=2, normalize="position"))
    adv = fn(_STEP_R, _STEP_END, _STEP_VALID)
    np.testing.assert_allclose(adv, [[-1, -1, -1, -1], [1, 1, 1, 0]], rtol=1e-5)
    # groups of one: every step is alone at its index -> all zero
    alone = process_advantages(_STEP_R, _STEP_END, _STEP_VALID, group_size=1, normalize="position")
    np.testing.assert_array_equal(alone, 0.0)


def test_process_advantages_bad_input():
    with pytest.raises(ValueError, match="normalize must be one of"):
        process_advantages(_STEP_R, _STEP_END, _STEP_VALID, normalize="batch")
    with pytest.raises(ValueError, match="group_size"):
        process_advantages(_STEP_R, _STEP_END, _STEP_VALID, group_size=3)
    with pytest.raises(ValueError, match="equal"):
        process_advantages(_STEP_R, _STEP_END[:, :3], _STEP_VALID)
    with pytest.raises(ValueError, match="outcome"):
        process_advantages(_STEP_R, _STEP_END, _STEP_VALID, outcome=jnp.zeros(3))
