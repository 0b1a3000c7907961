"""Host-verifier bridge: a Python scorer supplies the reward of a token env through pure_callback."""

import json
import multiprocessing
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import _fuzz
from jaxrl_reason.envs.tasks.base import extract_answer_text

TOK = jr.ASCII_TOKENIZER
PROBLEMS = [
    {"prompt": "What is 2+3?", "answer": "5", "meta": (1, 2)},
    {"prompt": "Capital of France?", "answer": "Paris"},
    {"prompt": "Name a prime > 10.", "answer": "11"},
]


class ExactMatch:
    """1.0 for the exact answer, 0.25 if it matches after stripping spaces, else 0; counts its calls.

    The count lives in shared memory: the env calls the scorer in its (forked) worker process.
    """

    def __init__(self):
        self._calls = multiprocessing.Value("i", 0)

    @property
    def calls(self):
        return self._calls.value

    @calls.setter
    def calls(self, value):
        self._calls.value = value

    def __call__(self, problem, text):
        with self._calls.get_lock():
            self._calls.value += 1
        answer = extract_answer_text(text, TOK)
        if answer is None:
            return 0.0
        return 1.0 if answer == problem["answer"] else 0.25 if answer.strip() == problem["answer"] else 0.0


def _env(**kw):
    return jr.HostVerifiedTask(PROBLEMS, ExactMatch(), answer_key="answer", max_response_length=12, **kw)


def _buffers(env, rows):
    """Token buffers for (problem index, response text) rows, cut to the buffer like a real episode.

    Returns ``(tokens [B, L], prompt_length [B], length [B])`` and the response texts in the buffers.
    """
    spec, tokens, starts, lengths, texts = env.spec, [], [], [], []
    for i, text in rows:
        prompt = [spec.bos_id, *env._prompt_table[i, : env._prompt_lengths[i]]]
        ids = (prompt + TOK.encode(text))[: spec.max_length]
        tokens.append(ids + [spec.pad_id] * (spec.max_length - len(ids)))
        starts.append(len(prompt)), lengths.append(len(ids)), texts.append(TOK.decode(ids[len(prompt) :]))
    return tuple(jnp.asarray(np.array(x, np.int32)) for x in (tokens, starts, lengths)), texts


def test_api_test_with_and_without_demonstrations():
    env = _env()
    assert env.spec.num_actions == TOK.vocab_size == 4 + 97 and env.spec.max_prompt_length == 1 + 18
    jr.api_test(env, num_episodes=8)
    bare = jr.HostVerifiedTask(PROBLEMS, ExactMatch(), max_response_length=6)
    assert not hasattr(bare, "demonstration")  # api_test skips the demonstration check
    jr.api_test(bare, num_episodes=4)


def test_verify_under_jit_vmap_equals_score_text():
    env = _env()
    a, e = TOK.answer_marker, TOK.eos
    texts = [
        "",
        "5",
        a + "5",
        a + " 5 ",
        "x" + a + "5" + e + "junk",
        a + "5" + a + "5",
        a + "Paris",
        a + "11",
        "ab" + a,
    ]
    rows = [(i, t) for i in range(3) for t in texts] + [(1, "long reasoning " + a + "Paris")]  # cut by the buffer
    verify = jax.jit(jax.vmap(env.verify))
    buffers, in_buffer = _buffers(env, rows)
    got = np.asarray(verify(jnp.asarray([i for i, _ in rows], jnp.int32), *buffers))
    want = [env.score_text(env.problem_to_dict(jnp.int32(i)), t) for (i, _), t in zip(rows, in_buffer, strict=True)]
    np.testing.assert_array_equal(got, np.asarray(want, np.float32))
    # golden values of the scorer through the token path
    assert got[2] == 1.0 and got[3] == np.float32(0.25) and got[4] == 1.0 and got[5] == 0.0
    assert got[len(texts) + 6] == 1.0 and got[2 * len(texts) + 7] == 1.0 and got[-1] == 0.0
    assert env.score_text(PROBLEMS[0], "⟨ans⟩5 ünïcode") == 0.0  # not encodable -> 0


def test_scorer_runs_once_per_finished_episode_in_a_jitted_rollout():
    env = _env()
    step = jax.jit(jax.vmap(env.step))
    state = jax.jit(jax.vmap(env.init_from_problem))(jnp.asarray([0, 1, 2, 0], jnp.int32))
    scripts = [TOK.answer_marker + "5", TOK.answer_marker + "Paris", "no", TOK.answer_marker + "6"]
    ids = [TOK.encode(s) + [TOK.eos_id] for s in scripts]
    env.scorer.calls, total = 0, np.zeros(4, np.float32)
    for t in range(max(map(len, ids))):
        actions = jnp.asarray([x[t] if t < len(x) else TOK.eos_id for x in ids], jnp.int32)
        state = step(state, actions)
        total += np.asarray(state.rewards[:, 0])
    assert np.asarray(state.terminated).all()
    assert env.scorer.calls == 4  # the callback runs every step but scores only rows that end now
    np.testing.assert_array_equal(total, [1.0, 1.0, 0.0, 0.0])
    again = step(state, jnp.zeros(4, jnp.int32))  # frozen episodes are not scored again
    assert env.scorer.calls == 4 and not np.asarray(again.rewards).any()


def test_problems_round_trip_through_json_and_unknown_ones_are_refused():
    env = _env()
    for i in range(3):
        d = json.loads(json.dumps(env.problem_to_dict(jnp.int32(i))))  # the tuple comes back as a list
        assert int(env.problem_from_dict(d)) == i
        assert env.prompt_text(d) == PROBLEMS[i]["prompt"]
    with pytest.raises(ValueError, match="not one of this task's 3 problems"):
        env.problem_from_dict({"prompt": "new?", "answer": "1"})


def test_long_prompts_raise_or_are_truncated_as_asked():
    with pytest.raises(ValueError, match=r"problem 0: prompt encodes to 12 tokens .* truncate_prompts"):
        _env(max_prompt_length=10)
    left, right = (
        _env(max_prompt_length=10, truncate_prompts="left"),
        _env(max_prompt_length=10, truncate_prompts="right"),
    )
    assert left.prompt_text(PROBLEMS[1]) == "f France?" and right.prompt_text(PROBLEMS[1]) == "Capital o"
    assert left.spec.max_prompt_length == 10
    jr.api_test(right, num_episodes=4)


def test_bad_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="problem 0: prompt cannot be tokenized.*'é'"):
        jr.HostVerifiedTask([{"prompt": "café"}], ExactMatch())
    with pytest.raises(ValueError, match="needs at least one problem"):
        jr.HostVerifiedTask([], ExactMatch())
    with pytest.raises(ValueError, match="problem 0 must be a dict with a str under 'prompt'"):
        jr.HostVerifiedTask([{"question": "x"}], ExactMatch())
    with pytest.raises(ValueError, match="truncate_prompts must be"):
        jr.HostVerifiedTask(PROBLEMS, ExactMatch(), truncate_prompts="middle")
    with pytest.raises(ValueError, match="scorer must be a callable"):
        jr.HostVerifiedTask(PROBLEMS, "exact")


def test_long_responses_end_at_the_window_and_stepping_equals_score_text():
    """Problem 0's prompt is shorter than the buffer's: its episodes still end after 12 response tokens."""
    env = _env()
    a, e = TOK.answer_marker, TOK.eos
    dicts, texts = [], []
    for i, answer in enumerate(["5", "Paris", "11"]):
        for k in range(16):
            for tail in ("", e, "!" * 8):
                dicts.append(PROBLEMS[i])
                texts.append("x" * k + a + answer + tail)
    played = _fuzz.play_responses(env, dicts, texts, batch=64)
    np.testing.assert_array_equal(played.rewards, played.scores.astype(np.float32))
    assert max(len(TOK.encode(r)) for r in played.responses) == env.max_response_length == 12
    assert played.truncated.sum() > len(texts) // 2 and played.rewards.sum() > 0
    # golden: "xxxxxx<ans>5" fills the window (12 tokens) and is right; one more "x" cuts the answer off
    assert env.score_text(PROBLEMS[0], played.responses[3 * 10]) == 1.0 and played.rewards[3 * 10] == 1.0
    assert played.responses[3 * 11] == "x" * 11 + a and played.rewards[3 * 11] == 0.0


def _slow_or_boom(problem, text):
    if "slow" in text:
        time.sleep(60)
    if "boom" in text:
        raise KeyError("boom")
    return float(extract_answer_text(text, TOK) == problem["answer"])


def test_a_scorer_past_its_time_limit_scores_zero_and_is_counted():
    env = jr.HostVerifiedTask(PROBLEMS, _slow_or_boom, max_response_length=12, timeout_s=0.5)
    a = TOK.answer_marker
    t = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="timeout_s=0.5"):
        assert env.score_text(PROBLEMS[0], a + "slow") == 0.0
    assert time.perf_counter() - t < 0.5 + 3.0 and env.num_timeouts == 1
    assert env.score_text(PROBLEMS[0], a + "5") == 1.0  # a fresh worker scores the next call
    # under jit + vmap: the slow row scores 0, the rows around it are still scored
    rows = [(0, a + "5"), (1, a + "slow"), (2, a + "11")]
    buffers, _ = _buffers(env, rows)
    t = time.perf_counter()
    with pytest.warns(RuntimeWarning):
        got = np.asarray(jax.jit(jax.vmap(env.verify))(jnp.asarray([0, 1, 2], jnp.int32), *buffers))
    np.testing.assert_array_equal(got, [1.0, 0.0, 1.0])
    assert time.perf_counter() - t < 0.5 + 10.0 and env.num_timeouts == 2  # (includes compiling)
    with pytest.raises(KeyError, match="boom"):  # a scorer's exception still propagates
        env.score_text(PROBLEMS[0], a + "boom")
    assert env.score_text(PROBLEMS[2], a + "11") == 1.0
    env.close()


def test_timeout_none_scores_in_process_and_bad_timeouts_raise():
    calls = []
    scorer = lambda problem, text: calls.append(text) or 1.0  # noqa: E731
    env = jr.HostVerifiedTask(PROBLEMS, scorer, timeout_s=None)
    assert env.score_text(PROBLEMS[1], "x") == 1.0 and calls == ["x"] and env.num_timeouts == 0
    with pytest.raises(ValueError, match="timeout_s must be > 0"):
        jr.HostVerifiedTask(PROBLEMS, scorer, timeout_s=0)


def test_reward_needs_answer_defaults_to_true_and_can_be_declared():
    assert _env().spec.reward_needs_answer is True
    assert _env(reward_needs_answer=False).spec.reward_needs_answer is False
