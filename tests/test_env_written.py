"""Env-written tokens (#19): rollouts record them, and no policy loss, KL or entropy term trains on them.

Each loss is checked against a reference computed by hand over a small hand-built mask, and by its gradient:
exactly 0 with respect to the logits that predict an env-written token (so changing them changes nothing).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.algorithms.alphazero import alphazero_loss
from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.algorithms.grpo import policy_gradient_loss
from jaxrl_reason.algorithms.sft import response_targets, sft_loss
from jaxrl_reason.algorithms.star import star_loss
from jaxrl_reason.envs.replay import replay_written
from jaxrl_reason.problems import demonstration_set, stack_problems
from jaxrl_reason.search import SearchConfig, selfplay
from jaxrl_reason.training.imitation import with_written

RNG = np.random.default_rng(0)
# Two rows, L = 6, A = 4: prompts of 2 tokens; row 0 has 4 response tokens, row 1 has 3.
TOKENS = jnp.asarray([[1, 3, 0, 2, 1, 2], [1, 2, 3, 3, 0, 0]], jnp.int32)
PROMPT, LENGTH = jnp.asarray([2, 2], jnp.int32), jnp.asarray([6, 5], jnp.int32)
WRITTEN = jnp.zeros((2, 6), bool).at[0, 3].set(True).at[1, 2].set(True)
# The (row, token position) targets a loss counts: response tokens not written by the env.
COUNTED = [(0, 2), (0, 4), (0, 5), (1, 3), (1, 4)]
SKIPPED = [(0, 3), (1, 2)]  # env-written response tokens
LOGITS = jnp.asarray(RNG.normal(size=(2, 6, 4)), jnp.float32)


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    return x - np.log(np.exp(x - x.max(-1, keepdims=True)).sum(-1, keepdims=True)) - x.max(-1, keepdims=True)


def _assert_no_gradient_at_skipped(loss_of_logits, logits=LOGITS):
    grad = np.asarray(jax.grad(loss_of_logits)(logits))
    for b, p in SKIPPED:  # the prediction of token p sits at position p - 1
        np.testing.assert_array_equal(grad[b, p - 1], 0.0)
    for b, p in COUNTED:
        assert np.abs(grad[b, p - 1]).sum() > 0
    changed = logits.at[0, 2].add(5.0).at[1, 1].add(-3.0)  # the logits of the skipped targets
    np.testing.assert_allclose(float(loss_of_logits(changed)), float(loss_of_logits(logits)), rtol=1e-6)


def test_response_targets_drop_env_written_positions():
    _, mask = response_targets(TOKENS, PROMPT, LENGTH, WRITTEN)
    counted = {(b, int(p) + 1) for b, p in zip(*np.nonzero(np.asarray(mask)), strict=True)}
    assert counted == set(COUNTED)
    _, plain = response_targets(TOKENS, PROMPT, LENGTH)
    assert int(plain.sum()) == len(COUNTED) + len(SKIPPED)


def test_sft_loss_equals_the_hand_computed_mean_over_policy_tokens():
    log_p = _log_softmax(LOGITS)
    expected = np.mean([-log_p[b, p - 1, TOKENS[b, p]] for b, p in COUNTED])
    loss, _ = sft_loss(LOGITS, TOKENS, PROMPT, LENGTH, WRITTEN)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    assert abs(float(sft_loss(LOGITS, TOKENS, PROMPT, LENGTH)[0]) - expected) > 1e-3  # the mask matters here
    _assert_no_gradient_at_skipped(lambda lg: sft_loss(lg, TOKENS, PROMPT, LENGTH, WRITTEN)[0])


def test_distill_loss_equals_the_hand_computed_kl_over_policy_tokens():
    teacher = jnp.asarray(_log_softmax(RNG.normal(size=(2, 5, 4))), jnp.float32)
    batch = {"tokens": TOKENS, "prompt_length": PROMPT, "length": LENGTH, "teacher_log_probs": teacher}
    log_q, log_p = _log_softmax(LOGITS), np.asarray(teacher, np.float64)
    kl = lambda b, i: (np.exp(log_p[b, i]) * (log_p[b, i] - log_q[b, i])).sum()
    expected = np.mean([kl(b, p - 1) for b, p in COUNTED])
    loss, _ = distill_loss(LOGITS, {**batch, "written": WRITTEN})
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    _assert_no_gradient_at_skipped(lambda lg: distill_loss(lg, {**batch, "written": WRITTEN})[0])


def test_star_loss_skips_env_written_tokens_of_accepted_responses():
    accepted = jnp.asarray([True, False])
    log_p = _log_softmax(LOGITS)
    expected = np.mean([-log_p[0, p - 1, TOKENS[0, p]] for p in (2, 4, 5)])
    loss, metrics = star_loss(LOGITS, TOKENS, PROMPT, LENGTH, accepted, WRITTEN)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-6)
    assert int(metrics["num_accepted"]) == 1
    grad = np.asarray(jax.grad(lambda lg: star_loss(lg, TOKENS, PROMPT, LENGTH, accepted, WRITTEN)[0])(LOGITS))
    np.testing.assert_array_equal(grad[0, 2], 0.0)
    np.testing.assert_array_equal(grad[1], 0.0)


# Policy gradient: B = 2 responses, T = 4 steps; step (0, 1) is env-written, as is the invalid (1, 3).
PG_VALID = jnp.asarray([[True, True, True, False], [True, True, False, False]])
PG_WRITTEN = jnp.asarray([[False, True, False, False], [False, False, False, True]])
PG_COUNTED = [(0, 0), (0, 2), (1, 0), (1, 1)]


def _pg_reference(log_p, old, adv, ref, kl_coef, clip, loss_agg):
    log_p, old, ref = (np.asarray(x, np.float64) for x in (log_p, old, ref))
    terms = {}
    for b, t in PG_COUNTED:
        ratio = np.exp(log_p[b, t] - old[b, t])
        surrogate = min(ratio * adv[b], np.clip(ratio, 1 - clip, 1 + clip) * adv[b])
        x = ref[b, t] - log_p[b, t]
        terms[b, t] = -surrogate + kl_coef * (np.exp(x) - x - 1)
    if loss_agg == "token":
        return np.mean(list(terms.values()))
    return np.mean([np.mean([v for (b, _), v in terms.items() if b == row]) for row in (0, 1)])


@pytest.mark.parametrize("loss_agg", ["token", "sequence"])
def test_policy_gradient_loss_equals_the_hand_computed_value_over_policy_tokens(loss_agg):
    log_p = jnp.asarray(RNG.normal(-1.0, 0.3, (2, 4)), jnp.float32)
    old = log_p + jnp.asarray(RNG.normal(0, 0.3, (2, 4)), jnp.float32)  # some ratios clip
    ref = log_p + jnp.asarray(RNG.normal(0, 0.3, (2, 4)), jnp.float32)
    adv = jnp.asarray([1.5, -0.7], jnp.float32)
    kw = dict(ref_log_p=ref, kl_coef=0.1, clip_eps=0.2, loss_agg=loss_agg, env_written=PG_WRITTEN)
    loss_of = lambda lp: policy_gradient_loss(lp, old, adv, PG_VALID, **kw)[0]
    expected = _pg_reference(log_p, old, adv, ref, 0.1, 0.2, loss_agg)
    np.testing.assert_allclose(float(loss_of(log_p)), expected, rtol=1e-5)
    grad = np.asarray(jax.grad(loss_of)(log_p))
    assert grad[0, 1] == 0.0 and grad[1, 3] == 0.0 and all(grad[b, t] != 0 for b, t in PG_COUNTED)
    _, metrics = policy_gradient_loss(log_p, old, adv, PG_VALID, **kw)
    ratio = np.exp(np.asarray(log_p, np.float64) - np.asarray(old, np.float64))
    np.testing.assert_allclose(float(metrics["ratio"]), np.mean([ratio[i] for i in PG_COUNTED]), rtol=1e-5)


def test_alphazero_policy_loss_skips_env_written_steps_and_value_loss_keeps_them():
    # One episode, prompt of 2 tokens, T = 3 steps (L = 5); step 1 was written by the env.
    pi = jnp.asarray(RNG.dirichlet(np.ones(4), (1, 3)), jnp.float32)
    traj = jr.Trajectory(
        tokens=jnp.asarray([[1, 3, 0, 2, 1]], jnp.int32),
        prompt_length=jnp.asarray([2], jnp.int32),
        actions=jnp.asarray([[0, 2, 1]], jnp.int32),
        log_probs=jnp.zeros((1, 3)),
        values=jnp.zeros((1, 3)),
        rewards=jnp.zeros((1, 3, 1)).at[0, 2, 0].set(1.0),
        players=jnp.zeros((1, 3), jnp.int32),
        valid=jnp.ones((1, 3), bool),
        final_state=(),
        policy=pi,
        env_written=jnp.asarray([[False, True, False]]),
    )
    logits = LOGITS[:1, :5]
    values = jnp.asarray([[0.1, -0.2, 0.4, 0.9, 0.0]], jnp.float32)
    log_p = _log_softmax(logits)
    ce = [-(np.asarray(pi[0, t]) * log_p[0, 1 + t]).sum() for t in (0, 2)]  # step t is predicted at 2 + t - 1
    value_err = [(float(values[0, 1 + t]) - 1.0) ** 2 for t in (0, 1, 2)]
    loss, metrics = alphazero_loss(logits, values, traj, value_weight=0.5)
    np.testing.assert_allclose(float(metrics["policy_loss"]), np.mean(ce), rtol=1e-6)
    np.testing.assert_allclose(float(metrics["value_loss"]), np.mean(value_err), rtol=1e-6)
    np.testing.assert_allclose(float(loss), np.mean(ce) + 0.5 * np.mean(value_err), rtol=1e-6)
    g_logits, g_values = jax.grad(lambda lg, v: alphazero_loss(lg, v, traj)[0], argnums=(0, 1))(logits, values)
    np.testing.assert_array_equal(np.asarray(g_logits[0, 2]), 0.0)  # predicts the env-written step 1
    assert np.abs(np.asarray(g_logits[0, 1])).sum() > 0 and np.abs(np.asarray(g_logits[0, 3])).sum() > 0
    assert float(g_values[0, 2]) != 0.0  # the value of the state before the env-written token still learns


# --- rollouts fill env_written -----------------------------------------------------------------------------


class Marked(type(jr.make("addition-v0"))):
    """Addition that claims every third response token from the second on as env-written (dynamics unchanged),
    so the positions rollouts must report are known in advance."""

    def written_mask(self, state):
        pos = jnp.arange(state.tokens.shape[0])
        return (pos >= state.prompt_length) & (pos < state.length) & ((pos - state.prompt_length) % 3 == 1)


PLAIN, MARKED = jr.make("addition-v0", num_digits=1), Marked(num_digits=1)


def _model(env):
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, d_model=16, num_heads=2, num_layers=1))
    return model, model.init(jax.random.key(0))


def test_writes_tokens_is_true_exactly_when_written_mask_is_overridden():
    assert MARKED.writes_tokens and not PLAIN.writes_tokens
    assert jr.make("multiply-v0", tools=("calc",)).writes_tokens and not jr.make("multiply-v0").writes_tokens


def test_rollout_marks_env_written_steps_and_changes_nothing_else():
    model, params = _model(PLAIN)
    states = jax.vmap(PLAIN.init)(jax.random.split(jax.random.key(1), 16))
    run = lambda env: jax.jit(lambda s, k: jr.rollout(model, params, env, s, k, temperature=2.0))(
        states, jax.random.key(2)
    )
    plain, marked = run(PLAIN), run(MARKED)
    assert plain.env_written is None
    for name in ("tokens", "actions", "log_probs", "values", "rewards", "valid"):
        np.testing.assert_array_equal(np.asarray(getattr(plain, name)), np.asarray(getattr(marked, name)))
    t = np.arange(marked.valid.shape[1])[None, :]
    expected = np.asarray(marked.valid) & (t % 3 == 1)
    assert expected.sum() > 0 and (~expected & np.asarray(marked.valid)).sum() > 0
    np.testing.assert_array_equal(np.asarray(marked.env_written), expected)


def test_selfplay_marks_env_written_steps():
    model, params = _model(MARKED)
    states = jax.vmap(MARKED.init)(jax.random.split(jax.random.key(3), 2))
    search = SearchConfig(num_simulations=4, top_k=4, max_depth=2)
    traj = jax.jit(lambda s, k: selfplay(model, params, MARKED, s, k, search=search))(states, jax.random.key(4))
    t = np.arange(traj.valid.shape[1])[None, :]
    expected = np.asarray(traj.valid) & (t % 3 == 1)
    assert expected.sum() > 0
    np.testing.assert_array_equal(np.asarray(traj.env_written), expected)


CALC_ENV = jr.make("multiply-v0", tools=("calc",))


def test_rollout_with_a_tool_marks_the_tools_answers():
    env = CALC_ENV
    model, params = _model(env)
    states = jax.vmap(env.init)(jax.random.split(jax.random.key(1), 64))
    traj = jax.jit(lambda s, k: jr.rollout(model, params, env, s, k, temperature=2.0))(states, jax.random.key(2))
    written = np.asarray(jax.vmap(env.written_mask)(traj.final_state))
    valid, env_written = np.asarray(traj.valid), np.asarray(traj.env_written)
    for b in range(64):
        p0 = int(traj.prompt_length[b])
        for t in range(valid.shape[1]):
            assert env_written[b, t] == (valid[b, t] and written[b, p0 + t])
    assert env_written.sum() >= 8  # a random policy calls the tool often enough to test it
    # Forced tokens: the only legal action, so their (legal-masked) log-prob is exactly 0.
    np.testing.assert_array_equal(np.asarray(traj.log_probs)[env_written], 0.0)
    assert (np.asarray(traj.log_probs)[valid & ~env_written] < 0).all()


# --- imitation data: written masks of demonstrations, by replay ----------------------------------------------

DICTS = [{"a": 347, "b": 25}, {"a": 9, "b": 0}, {"a": 120, "b": 77}]


def test_replayed_demonstrations_mark_exactly_the_tools_answers():
    data = with_written(CALC_ENV, demonstration_set(CALC_ENV, DICTS), DICTS)
    tok = CALC_ENV.tokenizer
    for i, d in enumerate(DICTS):
        state = CALC_ENV.init_from_problem(CALC_ENV.problem_from_dict(d))
        for token in data["tokens"][i, data["prompt_length"][i] : data["length"][i]]:
            state = CALC_ENV.step(state, int(token))
        assert float(state.rewards[0]) == 1.0
        np.testing.assert_array_equal(data["written"][i], np.asarray(CALC_ENV.written_mask(state)))
        answers = tok.decode(data["tokens"][i][data["written"][i]])
        assert answers == "".join(f"{r}]" for _, r in CALC_ENV.task.solution_steps(d))
    plain_env = jr.make("multiply-v0")
    plain = demonstration_set(plain_env, DICTS)
    assert with_written(plain_env, plain, DICTS) is plain  # envs that write nothing pay nothing


def test_replay_stops_at_each_rows_length():
    data = demonstration_set(CALC_ENV, DICTS)
    cut = data["prompt_length"] + 8  # "[347*5=" + the first answer token: the rest is not replayed
    written = jax.jit(lambda *a: replay_written(CALC_ENV, *a))(
        stack_problems(CALC_ENV, DICTS), data["tokens"], data["prompt_length"], cut
    )
    full = with_written(CALC_ENV, data, DICTS)["written"]
    later = 0
    for i in range(len(DICTS)):
        p0 = int(data["prompt_length"][i])
        np.testing.assert_array_equal(np.asarray(written[i, : p0 + 8]), full[i, : p0 + 8])
        assert not np.asarray(written[i, p0 + 8 :]).any()
        later += full[i, p0 + 8 :].sum()
    assert later > 0  # the full replay has answers past the cut
