"""Built-in reasoning tasks: conformance, JAX verifier == Python reference, golden values, demos."""

import functools
import json
import time

import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import _fuzz, _text
from jaxrl_reason.envs.tasks.countdown import evaluate_text, solve

IDS = ("addition-v0", "countdown-v0", "letter-count-v0", "sort-v0")
HARDER = {
    "addition-v0": {"num_digits": 6},
    "countdown-v0": {"num_numbers": (2, 6), "max_number": 999, "max_target": 99_999},
    "letter-count-v0": {"min_word_length": 10, "max_word_length": 20},
    "sort-v0": {"num_numbers": 9, "max_value": 1000},
}
ANS, EOS = jr.DEFAULT_TOKENIZER.answer_marker, jr.DEFAULT_TOKENIZER.eos


@functools.cache
def env_of(env_id, harder=False):
    return jr.make(env_id, **(HARDER[env_id] if harder else {}))


@functools.cache
def sampled(env_id, n=64, harder=False):
    """n sampled problem dicts (one jitted, vmapped init) and their initial states."""
    env = env_of(env_id, harder)
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(1), n))
    dicts = [env.problem_to_dict(jax.tree.map(lambda x, i=i: np.asarray(x)[i], states.problem)) for i in range(n)]
    return dicts, states


def assert_agree(env, dicts, texts, expected=None):
    rewards, scores, used = _fuzz.verify_texts(env, dicts, texts)
    bad = [(d, t, r, s) for d, t, r, s in zip(dicts, used, rewards, scores, strict=True) if r != s]
    assert not bad, f"verify != score_text on {len(bad)} responses, e.g. {bad[:3]}"
    if expected is not None:
        wrong = [(d, t, s, e) for d, t, s, e in zip(dicts, used, scores, expected, strict=True) if s != e]
        assert not wrong, f"wrong scores (problem, text, got, want): {wrong}"
    return scores


# -- conformance ------------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_api_test_default_difficulty(env_id):
    jr.api_test(env_of(env_id), num_episodes=8)


@pytest.mark.parametrize("env_id", IDS)
def test_api_test_harder_difficulty(env_id):
    jr.api_test(env_of(env_id, harder=True), num_episodes=8)


@pytest.mark.parametrize("env_id", IDS)
def test_prompts_match_reference_and_dicts_roundtrip(env_id):
    env, tok = env_of(env_id), jr.DEFAULT_TOKENIZER
    dicts, states = sampled(env_id)
    tokens, plen = np.asarray(states.tokens), np.asarray(states.prompt_length)
    for i, d in enumerate(dicts):
        assert tokens[i, 0] == tok.bos_id
        assert tok.decode(tokens[i, 1 : plen[i]]) == env._prompt_text_reference(d)
        assert json.loads(json.dumps(d)) == d
    assert env.prompt_text(dicts[0]) == env._prompt_text_reference(dicts[0])
    assert max(plen) <= env.spec.max_prompt_length


# -- fuzz: verify == score_text -----------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_fuzz_random_and_near_miss_responses_agree(env_id):
    env = env_of(env_id)
    dicts, _ = sampled(env_id)
    rng = np.random.default_rng(0)
    probs, texts = [], []
    for d in dicts:
        texts += _fuzz.random_responses(env, rng, 3) + _fuzz.near_misses(env, d, rng, 4) + [env.demonstration(d)]
        probs += [d] * 8
    scores = assert_agree(env, probs, texts)
    assert 0 < scores.mean() < 1  # both outcomes occur


def _structured(env, d):
    """Hypothesis strategy of near-miss responses built from the problem's own pieces."""
    demo = env.demonstration(d)
    reasoning, answer = demo.split(ANS)
    pieces = [answer, answer[:1], answer[1:], ANS, EOS, "0", "1", ",", "=", "00000000000000000000"]
    pieces += [c for c in "+-*/()" if c in env.response_alphabet]
    pieces += [str(v) for v in d.get("numbers", [])] + [str(v) for k, v in d.items() if isinstance(v, int)]
    pieces += [d["letter"], d["word"]] if "word" in d else []
    part = st.lists(st.sampled_from(pieces), max_size=6).map("".join)
    return st.tuples(st.sampled_from(["", reasoning]), part, st.sampled_from(["", ANS]), part).map("".join)


@settings(max_examples=3, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
@pytest.mark.parametrize("env_id", IDS)
def test_fuzz_hypothesis_structured_near_misses_agree(env_id, data):
    env = env_of(env_id)
    dicts, _ = sampled(env_id)
    idx = data.draw(st.lists(st.integers(0, 7), min_size=64, max_size=64))
    texts = [data.draw(_structured(env, dicts[i])) for i in idx]
    assert_agree(env, [dicts[i] for i in idx], texts)


# -- adversarial sets and golden values ----------------------------------------------------------------
def _common(correct: str, wrong_answers: list[str]):
    """Generic (text, expected) cases around one correct answer."""
    cases = [
        (ANS + correct, 1.0),
        ("reasoning" + ANS + correct, 1.0),
        (ANS + correct + EOS + "junk after eos", 1.0),
        (ANS + correct + "7", 0.0),
        (ANS + correct + ANS + correct, 0.0),  # two markers
        (correct, 0.0),  # no marker
        (correct + ANS, 0.0),  # correct answer before the marker only
        (ANS, 0.0),  # empty answer
        (ANS + EOS + correct, 0.0),
        (ANS + "0" + correct, 0.0),  # leading zero
        (ANS + " " + correct, 0.0),  # space
        (ANS + correct + " ", 0.0),
        (ANS + "9" * 30, 0.0),  # huge number
        ("", 0.0),
    ]
    return cases + [(ANS + w, 0.0) for w in wrong_answers]


def _run_cases(env_id, problem, cases, harder=False):
    env = env_of(env_id, harder)
    texts, expected = zip(*cases, strict=True)
    assert_agree(env, [problem] * len(texts), list(texts), list(expected))


def test_addition_adversarial_and_golden():
    env = env_of("addition-v0")
    assert env.prompt_text({"a": 999, "b": 1}) == "999+1="
    assert env.demonstration({"a": 999, "b": 1}) == "9+1=10,9+0+1=10,9+0+1=10," + ANS + "1000"
    assert env.demonstration({"a": 57, "b": 68}) == "7+8=15,5+6+1=12," + ANS + "125"
    wrong = ["999", "100", "10000", "1,000", "1000=", "+1000", "-1000", "1000a", "0", "00", "1e3", "999+1"]
    _run_cases("addition-v0", {"a": 999, "b": 1}, _common("1000", wrong))
    _run_cases("addition-v0", {"a": 0, "b": 0}, _common("0", ["00", "1", "-0", "0,"])[:4] + [(ANS + "00", 0.0)])


def test_countdown_adversarial_and_golden():
    p = {"numbers": [3, 5, 7], "target": 22}
    right = ["3*5+7", "(3*5)+7", "7+5*3", "7+3*5", "((3*5))+7", "(7+5*3)", "5*3+7", "7+(5*3)"]
    wrong = ["3*(5+7)", "3*5+7+3", "15+7", "3*5+7=22", "22", "3*5*7", "3*5+07", "-3*5+7", "3*5+7)", "(3*5+7"]
    wrong += ["3*5++7", "3*5+7,", "3*5+7*1", "3 *5+7", "3*5+(7)(", "()3*5+7", "3*5+7()", "3(5)+7", "(3)5+7"]
    wrong += ["3*5+7-0", "3*5", "5+7+3", "7/0+3*5", "+3*5+7", "3*5+7+", "0003*5+7", "3*5+7" + "0" * 30]
    cases = _common("3*5+7", wrong) + [(ANS + r, 1.0) for r in right]
    _run_cases("countdown-v0", p, cases)
    # Non-exact division and division by zero are wrong; exact division is fine.
    _run_cases(
        "countdown-v0",
        {"numbers": [6, 4, 2], "target": 3},
        [(ANS + x, y) for x, y in [("6/4*2", 0.0), ("6/(4-2)", 1.0), ("6*2/4", 1.0), ("2*6/4", 1.0), ("6/4/2", 0.0)]],
    )
    _run_cases("countdown-v0", {"numbers": [2, 2, 5], "target": 5}, [(ANS + "5/(2-2)", 0.0), (ANS + "5*2/2", 1.0)])
    # Intermediates beyond 10**6 (and beyond int32) are wrong even when the final value would be right.
    big = {"numbers": [999] * 6, "target": 1}
    cases = [
        (ANS + "999*999/999*999/999/999", 1.0),  # 998001 <= 10**6 stays in bounds
        (ANS + "999/999*999/999*999/999", 1.0),
        (ANS + "999*999*999/999/999/999", 0.0),  # 999**3 > 10**6
        (ANS + "999*999*999*999/999/999", 0.0),  # 999**4 overflows int32
        (ANS + "999-999*999*999+999/999", 0.0),
    ]
    _run_cases("countdown-v0", big, cases, harder=True)
    assert evaluate_text("7-3*5", 2) == (-8, [7, 3, 5])  # negative intermediates are allowed
    assert evaluate_text("1000", 3) is None and evaluate_text("(3", 2) is None


def _random_expression(rng, numbers):
    """A random infix expression over some of `numbers` (maybe repeated), with random parentheses."""
    pool = [int(v) for v in rng.permutation(numbers)][: int(rng.integers(1, len(numbers) + 2))]
    if rng.random() < 0.2:
        pool.append(int(rng.choice(numbers)))
    text = str(pool[0])
    for v in pool[1:]:
        op = str(rng.choice(list("+-*/")))
        text = (
            f"({text}){op}{v}" if rng.random() < 0.3 else (f"{v}{op}{text}" if rng.random() < 0.3 else f"{text}{op}{v}")
        )
    return text


def test_countdown_jax_evaluator_matches_python_values():
    env = env_of("countdown-v0")
    rng = np.random.default_rng(0)
    dicts, _ = sampled("countdown-v0")
    probs = [dicts[int(rng.integers(len(dicts)))] for _ in range(256)]
    texts = [_random_expression(rng, d["numbers"]) for d in probs]
    size = env.max_response_length
    answers = np.zeros((256, size), np.int32)
    lengths = np.zeros((256,), np.int32)
    for r, t in enumerate(texts):
        ids = env.tokenizer.encode(t)[:size]
        answers[r, : len(ids)], lengths[r] = ids, len(ids)
        texts[r] = env.tokenizer.decode(ids)
    batch = jax.tree.map(lambda *x: np.stack(x), *[env.problem_from_dict(d) for d in probs])
    ok, value, used = jax.jit(jax.vmap(env.evaluate))(answers, lengths, batch["numbers"], batch["count"])
    valid = 0
    for r, (d, t) in enumerate(zip(probs, texts, strict=True)):
        want = evaluate_text(t, 2)
        multiset_ok = want is not None and sorted(want[1]) == sorted(d["numbers"])
        if want is not None and len(want[1]) <= len(d["numbers"]) and set(want[1]) <= set(d["numbers"]):
            valid += 1
            assert bool(ok[r]) == all(want[1].count(v) <= d["numbers"].count(v) for v in want[1]), (d, t)
            if ok[r]:
                assert int(value[r]) == want[0] and bool(used[r]) == multiset_ok, (d, t)
        elif want is None:
            assert not ok[r], (d, t)
    assert valid > 100


def test_letter_count_adversarial_and_golden():
    env = env_of("letter-count-v0")
    p = {"word": "strawberry", "letter": "r"}
    assert env.prompt_text(p) == "r:strawberry"
    assert env.demonstration(p) == "s0t0r1a1w1b1e1r2r3y3" + ANS + "3"
    _run_cases("letter-count-v0", p, _common("3", ["2", "4", "33", "3a", "r", "three", "03", "3,", "=3"]))
    _run_cases("letter-count-v0", {"word": "abc", "letter": "z"}, _common("0", ["1", "00"])[:4])


def test_sort_adversarial_and_golden():
    env = env_of("sort-v0")
    p = {"numbers": [5, 1, 9, 5]}
    assert env.prompt_text(p) == "5,1,9,5" and env.demonstration(p) == ANS + "1,5,5,9"
    wrong = ["1,5,9", "1,5,5,9,", ",1,5,5,9", "1,5,5,,9", "01,5,5,9", "9,5,5,1", "1,5,5,9,9", "1559", "1,5,5"]
    _run_cases("sort-v0", p, _common("1,5,5,9", wrong))


# -- demonstrations ----------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", IDS)
def test_demonstrations_score_one_by_text_verify_and_steps(env_id):
    env = env_of(env_id)
    dicts, _ = sampled(env_id)
    demos = [env.demonstration(d) for d in dicts]
    assert max(len(env.tokenizer.encode(x)) + 1 for x in demos) <= env.max_response_length
    assert_agree(env, dicts, demos, [1.0] * len(demos))
    rewards, done = _fuzz.play_texts(env, dicts, demos)
    assert np.all(rewards == 1.0) and np.all(done)


@pytest.mark.parametrize("harder", [False, True])
@pytest.mark.parametrize("env_id", IDS)
def test_demonstrations_and_fuzz_at_scale(env_id, harder):
    env = env_of(env_id, harder)
    dicts, _ = sampled(env_id, 400, harder)
    demos = [env.demonstration(d) for d in dicts]
    assert max(len(env.tokenizer.encode(x)) + 1 for x in demos) <= env.max_response_length
    assert_agree(env, dicts, demos, [1.0] * len(demos))
    rewards, done = _fuzz.play_texts(env, dicts, demos)
    assert np.all(rewards == 1.0) and np.all(done)
    rng = np.random.default_rng(1)
    probs, texts = [], []
    for d in dicts:
        texts += _fuzz.random_responses(env, rng, 5) + _fuzz.near_misses(env, d, rng, 5)
        probs += [d] * 10
    assert_agree(env, probs, texts)


# -- long, untrimmed responses: stepping the env == score_text of what the episode holds ----------------
def assert_played_agree(env, dicts, texts):
    played = _fuzz.play_responses(env, dicts, texts)
    bad = [(d, r, x, y) for d, r, x, y in zip(dicts, played.responses, played.rewards, played.scores, strict=True)]
    bad = [b for b in bad if b[2] != b[3]]
    assert not bad, f"env.step reward != score_text on {len(bad)} responses, e.g. {bad[:3]}"
    assert played.done.all() and all(t.startswith(r) for t, r in zip(texts, played.responses, strict=True))
    assert max(len(env.tokenizer.encode(r)) for r in played.responses) <= env.max_response_length
    return played


@pytest.mark.parametrize("harder", [False, True])
@pytest.mark.parametrize("env_id", IDS)
def test_untrimmed_long_responses_agree_when_stepped(env_id, harder):
    env = env_of(env_id, harder)
    dicts, _ = sampled(env_id, 16, harder)
    rng = np.random.default_rng(7)
    probs, texts = [], []
    for d in dicts:
        batch = _fuzz.long_responses(env, d, rng, 10) + _fuzz.random_responses(env, rng, 3)
        texts += batch
        probs += [d] * len(batch)
    played = assert_played_agree(env, probs, texts)
    over = played.num_tokens > env.max_response_length
    assert over.sum() >= len(texts) // 3 and played.truncated.sum() >= len(texts) // 3  # the window is exercised
    assert 0 < played.scores.sum()  # some answers fit just before the window's end


@pytest.mark.parametrize(
    ("env_id", "problem", "text", "response", "reward"),
    [
        # The window (33 tokens) ends after "<ans>3": the episode is truncated there and that answer is right.
        ("addition-v0", {"a": 1, "b": 2}, "0" * 31 + ANS + "39" + EOS, "0" * 31 + ANS + "3", 1.0),
        ("sort-v0", {"numbers": [5]}, "0" * 17 + ANS + "55" + EOS, "0" * 17 + ANS + "5", 1.0),
        # A right answer that starts past the window: the episode ends before it, reward 0 by both paths.
        ("addition-v0", {"a": 1, "b": 2}, "0" * 32 + ANS + "3" + EOS, "0" * 32 + ANS, 0.0),
    ],
)
def test_response_window_regressions(env_id, problem, text, response, reward):
    """Issue 15: these responses used to run past verify's window (reward by stepping != score_text)."""
    env = jr.make(env_id)
    state = env.init_from_problem(env.problem_from_dict(problem))
    total = 0.0
    for a in env.tokenizer.encode(text):
        state = env.step(state, a)
        total += float(state.rewards[0])
    assert env.response_text(state) == response and bool(state.truncated)
    assert int(state.length - state.prompt_length) == env.max_response_length
    assert total == reward == env.score_text(problem, env.response_text(state))


def test_countdown_deep_parentheses_do_not_recurse():
    """The Python reference evaluates any nesting depth (it used to raise RecursionError), like verify."""
    p = {"numbers": [1, 2], "target": 3}
    wrong = "(" * 2000 + "1" + ")" * 2000  # uses one of the two numbers
    right = "(" * 2000 + "1+2" + ")" * 2000
    assert jr.make("countdown-v0").score_text(p, ANS + wrong) == 0.0
    assert evaluate_text(right, 2) == (3, [1, 2]) and evaluate_text(wrong, 2) == (1, [1])
    # verify agrees where a response window holds them (depth 600 already overflowed the old recursion).
    env = jr.make("countdown-v0", num_numbers=2, max_response_length=1210)
    texts = [ANS + "(" * 600 + x + ")" * 600 for x in ("1", "1+2", "2+1)")]
    assert_agree(env, [p] * 3, texts, [0.0, 1.0, 0.0])


@pytest.mark.parametrize(
    ("env_id", "needs"), [("addition-v0", True), ("countdown-v0", False), ("letter-count-v0", True), ("sort-v0", True)]
)
def test_reward_needs_answer_is_declared(env_id, needs):
    assert env_of(env_id).spec.reward_needs_answer is needs
    assert env_of(env_id, True).spec.reward_needs_answer is needs


# -- task-specific properties --------------------------------------------------------------------------
def test_countdown_solver_handles_six_numbers_quickly():
    env = env_of("countdown-v0", harder=True)
    t = time.perf_counter()
    for numbers, target in [([1, 2, 3, 4, 5, 6], 720), ([25, 50, 75, 100, 3, 6], 952), ([7, 7, 7, 7, 7, 7], 1)]:
        steps, expr = solve(numbers, target, env.max_target)
        value, literals = evaluate_text(expr, 3)
        assert value == target and sorted(literals) == sorted(numbers) and len(steps) == 5
    assert solve([2, 3], 7, 999) is None
    assert time.perf_counter() - t < 20
    with pytest.raises(ValueError, match="no solution"):
        env.demonstration({"numbers": [2, 3], "target": 7})


def test_sampled_problems_are_varied():
    dicts, _ = sampled("letter-count-v0")
    counts = [d["word"].count(d["letter"]) for d in dicts]
    assert np.mean(np.asarray(counts) >= 2) > 0.25 and max(counts) >= 3 and min(counts) == 0
    dicts, _ = sampled("countdown-v0")
    assert all(1 <= d["target"] <= 999 and len(d["numbers"]) == 4 for d in dicts)
    assert len({d["target"] for d in dicts}) > 32
    dicts, _ = sampled("addition-v0")
    assert all(0 <= d["a"] < 1000 and 0 <= d["b"] < 1000 for d in dicts)


@pytest.mark.parametrize(
    ("env_id", "kwargs", "match"),
    [
        ("addition-v0", {"num_digits": 0}, "num_digits must be in"),
        ("addition-v0", {"num_digits": 9}, "num_digits must be in"),
        ("countdown-v0", {"num_numbers": 7}, "num_numbers must be in"),
        ("countdown-v0", {"num_numbers": (5, 3)}, "min <= max"),
        ("countdown-v0", {"max_number": 1000}, "max_number must be in"),
        ("letter-count-v0", {"min_word_length": 9, "max_word_length": 4}, "min_word_length"),
        ("sort-v0", {"max_value": "99"}, "max_value must be an int"),
    ],
)
def test_bad_difficulty_kwargs_raise(env_id, kwargs, match):
    with pytest.raises(ValueError, match=match):
        jr.make(env_id, **kwargs)


@pytest.mark.parametrize(
    ("env_id", "problem", "match"),
    [
        ("addition-v0", {"a": 1000, "b": 1}, "'a' must be in"),
        ("addition-v0", {"a": 1.5, "b": 1}, "must be an int"),
        ("addition-v0", {"a": 1}, "keys"),
        ("countdown-v0", {"numbers": [1, 2, 3, 4, 5], "target": 3}, "2..4 ints"),
        ("countdown-v0", {"numbers": [1, 0], "target": 3}, "number must be in"),
        ("countdown-v0", {"numbers": [1, 2], "target": 1000}, "target' must be in"),
        ("countdown-v0", {"numbers": [True, 2], "target": 3}, "must be an int"),
        ("letter-count-v0", {"word": "Hello", "letter": "l"}, "lower-case"),
        ("letter-count-v0", {"word": "hello", "letter": "ll"}, "one lower-case"),
        ("letter-count-v0", {"word": "a" * 11, "letter": "a"}, "1..10"),
        ("sort-v0", {"numbers": []}, "1..6 ints"),
        ("sort-v0", {"numbers": [1, 100]}, "in \\[0, 99\\]"),
    ],
)
def test_bad_problem_dicts_raise(env_id, problem, match):
    with pytest.raises(ValueError, match=match):
        env_of(env_id).problem_from_dict(problem)


def test_text_helpers_match_python_twins():
    tok = jr.DEFAULT_TOKENIZER
    for v in [0, 7, 10, 999, 123456789]:
        ids, n = _text.render_int(v, 9, tok)
        assert tok.decode(np.asarray(ids)[: int(n)]) == str(v)
    for s in ["0", "7", "07", "123", "1234", "", "1a", "999"]:
        ids = np.asarray(tok.encode(s) + [0] * (6 - len(s)), np.int32)
        value, ok = _text.parse_decimal(ids, len(s), 3, tok)
        want = _text.parse_decimal_text(s, 3)
        assert bool(ok) == (want is not None) and (want is None or int(value) == want)
