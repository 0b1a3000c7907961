"""reasoning-gym adapter: rg/<dataset>-v0 envs score with the dataset's own score_answer."""

import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.adapters.reasoning_gym import _import_reasoning_gym
from jaxrl_reason.envs.tasks import _fuzz

rg = pytest.importorskip("reasoning_gym")


def _verify_texts(env, rows):
    """Rewards through the token path (jit(vmap(verify))) of (problem index, response text) rows."""
    spec, tok = env.spec, env.tokenizer
    tokens, starts, lengths = [], [], []
    for i, text in rows:
        prompt = [spec.bos_id, *env._prompt_table[i, : env._prompt_lengths[i]]]
        ids = prompt + tok.encode(text) + [tok.eos_id]
        assert len(ids) <= spec.max_length
        tokens.append(ids + [spec.pad_id] * (spec.max_length - len(ids)))
        starts.append(len(prompt)), lengths.append(len(ids))
    args = (jnp.asarray(np.array(x, np.int32)) for x in ([i for i, _ in rows], tokens, starts, lengths))
    return np.asarray(jax.jit(jax.vmap(env.verify))(*args))


@pytest.mark.parametrize("partial_credit", [False, True])
def test_countdown_token_path_matches_score_answer(partial_credit):
    env = jr.make("rg/countdown-v0", size=8, seed=3, partial_credit=partial_credit)
    ds = rg.create_dataset("countdown", size=8, seed=3)
    assert env.spec.env_id == "rg/countdown-v0" and env.num_problems == 8
    a = env.tokenizer.answer_marker
    rows, want = [], []
    for i in range(8):
        entry = ds[i]
        assert env.problem_to_dict(jnp.int32(i)) == entry
        assert env.prompt_text(entry) == entry["question"]
        wrong = entry["answer"].replace("+", "-", 1) if "+" in entry["answer"] else entry["answer"] + " + 1"
        for answer in (entry["answer"], wrong, "", "(("):
            score = ds.score_answer(answer=answer, entry=entry)
            rows.append((i, "think" + a + answer)), want.append(score if partial_credit else float(score == 1.0))
        rows.append((i, entry["answer"])), want.append(0.0)  # no answer marker
    got = _verify_texts(env, rows)
    np.testing.assert_array_equal(got, np.asarray(want, np.float32))
    texts = [t for _, t in rows]
    assert [env.score_text(ds[i], t) for (i, _), t in zip(rows, texts, strict=True)] == got.tolist()
    assert got[::5].tolist() == [1.0] * 8  # every reference answer is correct
    if partial_credit:
        assert np.float32(0.05) in got  # countdown's consolation score for a wrong expression
    else:
        assert set(got.tolist()) == {0.0, 1.0}


def test_rg_env_passes_api_test_and_demonstrations_score_one():
    env = jr.make("rg/basic_arithmetic-v0", size=8, seed=0, max_response_length=16)
    jr.api_test(env, num_episodes=8)
    for i in range(8):
        d = env.problem_to_dict(jnp.int32(i))
        assert env.score_text(d, env.demonstration(d)) == 1.0


def test_rg_errors_are_clear():
    with pytest.raises(ValueError, match="'nope' is not registered; available: .*countdown"):
        jr.make("rg/nope-v0", size=2)
    with pytest.raises(ValueError, match="rejected .* config {'colour': 1}: .*colour"):
        jr.make("rg/countdown-v0", size=2, colour=1)
    with pytest.raises(ValueError, match="rejected .*max_numbers must be >= min_numbers"):
        jr.make("rg/countdown-v0", size=2, min_numbers=5, max_numbers=3)
    with pytest.raises(ValueError, match="expected 'rg/<dataset>-v0'"):
        jr.make("rg/countdown-v3", size=2)
    with pytest.raises(ValueError, match=r"problem 0: prompt encodes to \d+ tokens .* truncate_prompts"):
        jr.make("rg/countdown-v0", size=2, max_prompt_length=64)
    cut = jr.make("rg/countdown-v0", size=2, max_prompt_length=64, truncate_prompts="right")
    d = cut.problem_to_dict(jnp.int32(0))
    assert cut.spec.max_prompt_length == 64 and cut.prompt_text(d) == d["question"][:63]


def test_missing_extra_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "reasoning_gym", None)  # what an absent package looks like to import
    with pytest.raises(ImportError, match=r"pip install jaxrl_reason\[reasoning\]"):
        _import_reasoning_gym()


def test_answers_with_characters_outside_the_gold_answers_never_reach_the_scorer():
    env = jr.make("rg/countdown-v0", size=8, seed=3, timeout_s=None)  # in-process: `calls` sees the calls
    scorer = env.scorer
    calls = []
    real = scorer.dataset.score_answer
    scorer.dataset.score_answer = lambda **kw: calls.append(kw["answer"]) or real(**kw)
    try:
        entry = env.problem_to_dict(jnp.int32(0))
        a = env.tokenizer.answer_marker
        for evil in ("__import__('os').system('true')", "x.y", "exec(1)", "a"):
            assert env.score_text(entry, a + evil) == 0.0
        assert calls == []  # blocked before the third-party scorer (which runs sympy.parse_expr)
        assert env.score_text(entry, a + entry["answer"]) == 1.0 and calls == [entry["answer"]]
    finally:
        scorer.dataset.score_answer = real


def test_a_scorer_that_computes_for_minutes_is_cut_off_at_the_time_limit():
    """``9**9**9`` passes countdown's character filter; sympy would evaluate it for minutes."""
    env = jr.make("rg/countdown-v0", size=4, seed=3, timeout_s=2.0)
    entry = env.problem_to_dict(jnp.int32(0))
    t = time.perf_counter()
    with pytest.warns(RuntimeWarning, match="rg/countdown-v0"):
        assert env.score_text(entry, env.tokenizer.answer_marker + "9**9**9") == 0.0
    assert time.perf_counter() - t < 2.0 + 3.0 and env.num_timeouts == 1
    assert env.score_text(entry, env.tokenizer.answer_marker + entry["answer"]) == 1.0
    env.close()


def test_rg_reward_needs_answer_defaults_to_true_and_can_be_declared():
    assert jr.make("rg/countdown-v0", size=2, seed=0).spec.reward_needs_answer is True
    assert jr.make("rg/countdown-v0", size=2, seed=0, reward_needs_answer=False).spec.reward_needs_answer is False


def test_rg_long_responses_stepped_equal_score_text():
    env = jr.make("rg/countdown-v0", size=4, seed=3, max_response_length=24)
    a, n = env.tokenizer.answer_marker, env.max_response_length
    dicts, texts = [], []
    for i in range(4):
        entry = env.problem_to_dict(jnp.int32(i))
        for k in range(n - len(entry["answer"]) - 3, n + 2):
            dicts.append(entry)
            texts.append(" " * k + a + entry["answer"])
    played = _fuzz.play_responses(env, dicts, texts, batch=32)
    np.testing.assert_array_equal(played.rewards, played.scores.astype(np.float32))
    assert 0 < played.rewards.sum() < len(texts) and played.truncated.any()
