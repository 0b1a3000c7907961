"""STaR / ReST-EM: acceptance with a per-problem cap, and the imitation loss against a hand computation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl_reason.algorithms.sft import sft_loss
from jaxrl_reason.algorithms.star import accepted_mask, star_loss, star_targets


def test_accepted_mask_with_a_per_problem_cap():
    rewards = jnp.array([1.0, 0.0, 1.0, 1.0, 1.0, 0.5])
    problems = jnp.array([0, 0, 0, 1, 0, 1])
    np.testing.assert_array_equal(accepted_mask(rewards), [True, False, True, True, True, False])
    # problem 0 has accepted responses at rows 0, 2, 4: the cap of 2 drops row 4; problem 1 keeps row 3
    capped = accepted_mask(rewards, problem_index=problems, max_per_problem=2)
    np.testing.assert_array_equal(capped, [True, False, True, True, False, False])
    one = jax.jit(lambda r, p: accepted_mask(r, problem_index=p, max_per_problem=1))(rewards, problems)
    np.testing.assert_array_equal(one, [True, False, False, True, False, False])
    with pytest.raises(ValueError, match="max_per_problem"):
        accepted_mask(rewards, max_per_problem=2)
    with pytest.raises(ValueError, match="rewards"):
        accepted_mask(rewards[None])


# row 0: prompt [1, 0], response [2, 3]; row 1: prompt [1], response [2, 3, 0]; row 2: prompt [1], response of
# 4 tokens, rejected (its logits are large garbage that must not count).
_TOKENS = jnp.array([[1, 0, 2, 3, 0], [1, 2, 3, 0, 0], [1, 3, 3, 3, 3]])
_PROMPT = jnp.array([2, 1, 1])
_LENGTH = jnp.array([4, 4, 5])
_LOGITS = (
    jnp.zeros((3, 5, 4))
    .at[0, 1, 2]
    .set(math.log(3.0))  # p(2 | row 0, pos 1) = 3 / 6
    .at[2]
    .set(jax.random.normal(jax.random.PRNGKey(0), (5, 4)) * 30.0)
)


def test_star_targets_mask_only_accepted_responses():
    targets, mask = star_targets(_TOKENS, _PROMPT, _LENGTH, jnp.array([True, True, False]))
    np.testing.assert_array_equal(targets, _TOKENS[:, 1:])
    np.testing.assert_array_equal(mask, [[0, 1, 1, 0], [1, 1, 1, 0], [0, 0, 0, 0]])


def test_star_loss_golden_token_average_over_accepted():
    loss, m = star_loss(_LOGITS, _TOKENS, _PROMPT, _LENGTH, jnp.array([True, True, False]))
    # row 0: ln 2 (pos 1) + ln 4 (pos 2, uniform); row 1: 3 tokens at ln 4 -> (ln 2 + 4 ln 4) / 5 = 9 ln 2 / 5
    # (a per-response mean would give ((ln 2 + ln 4) / 2 + ln 4) / 2 = 1.75 ln 2)
    np.testing.assert_allclose(float(loss), 9 * math.log(2) / 5, rtol=1e-6)
    assert int(m["num_accepted"]) == 2
    # the rejected row's logits get no gradient
    g = jax.grad(lambda lg: star_loss(lg, _TOKENS, _PROMPT, _LENGTH, jnp.array([True, True, False]))[0])(_LOGITS)
    np.testing.assert_array_equal(g[2], 0.0)
    assert np.abs(np.asarray(g[:2])).sum() > 0
    # everything accepted: exactly the SFT loss
    all_in = star_loss(_LOGITS, _TOKENS, _PROMPT, _LENGTH, jnp.ones(3, bool))[0]
    np.testing.assert_array_equal(all_in, sft_loss(_LOGITS, _TOKENS, _PROMPT, _LENGTH)[0])


def test_star_loss_is_zero_without_accepted_responses():
    none = jnp.zeros(3, bool)
    loss, m = star_loss(_LOGITS, _TOKENS, _PROMPT, _LENGTH, none)
    assert float(loss) == 0.0 and int(m["num_accepted"]) == 0
    g = jax.grad(lambda lg: star_loss(lg, _TOKENS, _PROMPT, _LENGTH, none)[0])(_LOGITS)
    assert np.isfinite(np.asarray(g)).all() and not np.asarray(g).any()
    with pytest.raises(ValueError, match="accepted"):
        star_loss(_LOGITS, _TOKENS, _PROMPT, _LENGTH, jnp.ones(2, bool))


def test_outcome_value_loss_golden():
    from jaxrl_reason.algorithms.star import outcome_value_loss

    values = jnp.array([[0.1, 0.2, 0.3, 0.4, 0.5], [0.9, 0.8, 0.7, 0.6, 0.5]])
    prompt_length, length = jnp.array([2, 1]), jnp.array([4, 3])
    rewards = jnp.array([1.0, 0.0])
    # row 0: states 1..3 (the last prompt token to the final state) against 1; row 1: states 0..2 against 0
    want = ((0.8**2 + 0.7**2 + 0.6**2) + (0.9**2 + 0.8**2 + 0.7**2)) / 6
    loss, metrics = outcome_value_loss(values, prompt_length, length, rewards)
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert float(metrics["value_loss"]) == float(loss)
