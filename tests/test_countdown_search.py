"""Stream-of-search demonstrations of countdown-v0: golden traces, a line-by-line checker, the cap."""

import functools
import re

import jax
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import countdown_search as cs

ANS = jr.DEFAULT_TOKENIZER.answer_marker
P = {"numbers": [3, 5, 7], "target": 22}

# Worked by hand. dfs: pairs (3,5), (3,7), (5,7), ops + - * /, larger operand first; [7,8] and [7,2] have
# no leaf equal to 22, so the search backs up to the root each time. bfs: all 9 children of the root first.
# closest: 7*3=21 is nearest 22 (1), then 5*3=15 (7); a two-number node writes only its nearest leaf.
GOLDEN = {
    "dfs": "5+3=8|7,8;8+7=15;8-7=1;8*7=56|3,5,7;5-3=2|7,2;7+2=9;7-2=5;7*2=14|3,5,7;5*3=15|7,15;15+7=22",
    "bfs": "5+3=8;5-3=2;5*3=15;7+3=10;7-3=4;7*3=21;7+5=12;7-5=2;7*5=35|7,8;8+7=15;8-7=1;8*7=56|7,2;7+2=9;7-2=5;"
    "7*2=14|7,15;15+7=22",
    "closest": "7*3=21|5,21;21+5=26|3,5,7;5*3=15|7,15;15+7=22",
}


@functools.cache
def env_of(num_numbers=3, order="closest", **kwargs):
    return jr.make("countdown-v0", num_numbers=num_numbers, demo_style="search", search_order=order, **kwargs)


@pytest.mark.parametrize("order", cs.ORDERS)
def test_golden_traces(order):
    assert env_of(3, order).demonstration(P) == GOLDEN[order] + ANS + "5*3+7"


def test_golden_more_problems():
    # [1,2,4]:10, closest. Root children by |r-10|: 4*2=8 (2), 4+2=6 (4), 4+1=5 (5), ...; the nearest leaves
    # of [1,8] and [1,6] are 9 and 7 (misses); [2,5] has 5*2=10.
    want = "4*2=8|1,8;8+1=9|1,2,4;4+2=6|1,6;6+1=7|1,2,4;4+1=5|2,5;5*2=10" + ANS + "(4+1)*2"
    assert env_of(3).demonstration({"numbers": [1, 2, 4], "target": 10}) == want
    # Four numbers [1,1,1,1]:4. dfs: 1+1=2, then in [1,1,2] again 1+1=2, then 2+2=4. closest: in [1,1,2]
    # the nearest child is 2+1=3 (|3-4|=1), then 3+1=4.
    four = {"numbers": [1, 1, 1, 1], "target": 4}
    assert env_of(4, "dfs").demonstration(four) == "1+1=2|1,1,2;1+1=2|2,2;2+2=4" + ANS + "1+1+1+1"
    assert env_of(4).demonstration(four) == "1+1=2|1,1,2;2+1=3|1,3;3+1=4" + ANS + "1+1+1+1"


def test_cut_falls_back_to_the_known_solution():
    # Uncapped closest trace has 45 reasoning tokens; at 40 the last lines go until "?" + the solver's path
    # (5*3=15|7,15;15+7=22) + <ans> + 5*3+7 fits.
    env = env_of(3, max_demo_tokens=40)
    assert env.demonstration(P) == "7*3=21|5,21?5*3=15|7,15;15+7=22" + ANS + "5*3+7"
    assert env_of(3, max_demo_tokens=25).demonstration(P) == "5*3=15|7,15;15+7=22" + ANS + "5*3+7"
    with pytest.raises(ValueError, match="more than max_demo_tokens=24"):
        env_of(3, max_demo_tokens=24).demonstration(P)


def test_options_and_defaults():
    path = jr.make("countdown-v0", num_numbers=3)
    assert path.demonstration(P) == "5*3=15,15+7=22," + ANS + "5*3+7"  # the default style is unchanged
    # A path-style env caps search demos at its own (short) response: 36 - 1 tokens cut the trace.
    assert (path.max_response_length, path.max_demo_tokens) == (36, 35)
    assert path.demonstration(P, style="search") == "7*3=21?5*3=15|7,15;15+7=22" + ANS + "5*3+7"
    assert env_of(3).demonstration(P, style="path") == path.demonstration(P)
    assert (env_of(3).max_response_length, env_of(3).max_demo_tokens) == (256, 255)
    assert env_of(4).max_response_length == 1024
    assert env_of(3, max_response_length=100).max_demo_tokens == 99
    tok = path.tokenizer
    marks = tok.ids_of(cs.SEARCH_ALPHABET)
    assert env_of(3)._legal_mask[marks].all() and not path._legal_mask[marks].any()
    for kwargs, msg in [
        ({"demo_style": "tree"}, "demo_style must be one of"),
        ({"search_order": "astar"}, "search_order must be one of"),
        ({"demo_style": "search", "max_demo_tokens": 300}, "max_demo_tokens must be in"),
    ]:
        with pytest.raises(ValueError, match=msg):
            jr.make("countdown-v0", num_numbers=3, **kwargs)
    with pytest.raises(ValueError, match="style must be one of"):
        path.demonstration(P, style="tree")


def _apply(op, a, b):
    return {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]


def check_trace(reasoning: str, numbers: list[int], target: int, max_value: int) -> None:
    """Asserts every line of a trace is right given only what the trace wrote before it.

    An equation uses two numbers of the node being expanded (the root, the last node line, or the root
    again after "?"), larger first, and its result is computed exactly in [1, max_value]; a node line
    names a child some equation generated (or the root); only the last line reaches the target.
    """
    root = tuple(numbers)
    segments = reasoning.split(cs.CUT_MARK)
    assert len(segments) <= 2, reasoning
    for s, segment in enumerate(segments):
        current, made = root, {root}
        lines = re.split(r"(?=\|)|;", segment)
        for i, line in enumerate(lines):
            if line.startswith(cs.NODE_MARK):
                node = tuple(int(v) for v in line[1:].split(","))
                assert node in made and len(node) > 1, (line, reasoning)
                current = node
                continue
            a, op, b, r = re.fullmatch(r"(\d+)([-+*/])(\d+)=(\d+)", line).groups()
            a, b, r = int(a), int(b), int(r)
            rest = list(current)
            rest.remove(a)
            rest.remove(b)  # ValueError when a, b are not two of the node's numbers
            assert a >= b and _apply(op, a, b) == r and 1 <= r <= max_value, (line, reasoning)
            made.add((*rest, r))
            last = s == len(segments) - 1 and i == len(lines) - 1
            assert (not rest and r == target) == last, (line, reasoning)


@functools.cache
def _sampled(num_numbers, n=500):
    env = jr.make("countdown-v0", num_numbers=num_numbers)
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(3), n))
    problems = jax.device_get(states.problem)
    dicts = [env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], problems)) for i in range(n)]
    return dicts, states


def _verify_all(env, states, responses: list[str]) -> np.ndarray:
    tok = env.tokenizer
    tokens = np.array(states.tokens)
    pad = np.full((tokens.shape[0], env.spec.max_length - tokens.shape[1]), tok.pad_id, tokens.dtype)
    tokens = np.concatenate([tokens, pad], axis=1)
    lengths = np.zeros(len(responses), np.int32)
    for i, text in enumerate(responses):
        ids = tok.encode(text + tok.eos)
        start = int(states.prompt_length[i])
        tokens[i, start : start + len(ids)] = ids
        lengths[i] = start + len(ids)
    verify = jax.jit(jax.vmap(env.verify))
    return np.asarray(verify(states.problem, tokens, states.prompt_length, lengths))


def _bump_last_digit(text: str) -> str:
    i = max(k for k, c in enumerate(text) if c.isdigit())
    return text[:i] + str((int(text[i]) + 1) % 10) + text[i + 1 :]


@pytest.mark.parametrize("num_numbers, cap", [(3, None), (4, 399)])
@pytest.mark.parametrize("order", cs.ORDERS)
def test_sampled_traces_are_right_and_verified(num_numbers, cap, order):
    """500 problems: each line checks out, the cap holds, score_text and the JAX verifier give 1 (0 if wrong)."""
    env = env_of(num_numbers, order, **({} if cap is None else {"max_demo_tokens": cap}))
    dicts, states = _sampled(num_numbers)
    demos = [env.demonstration(d) for d in dicts]
    cut = 0
    for d, demo in zip(dicts, demos, strict=True):
        assert len(env.tokenizer.encode(demo)) <= env.max_demo_tokens
        reasoning, answer = demo.split(ANS)
        check_trace(reasoning, d["numbers"], d["target"], env.max_target)
        assert env.score_text(d, demo) == 1.0
        cut += cs.CUT_MARK in reasoning
    if num_numbers == 4:
        assert cut > 0  # the fallback path was exercised
    assert (_verify_all(env, states, demos) == 1.0).all()
    # The same traces with a wrong answer (the last digit bumped: a literal that is not one of the numbers,
    # same length) score 0 in both paths.
    wrong = [_bump_last_digit(demo) for demo in demos]
    assert all(env.score_text(d, w) == 0.0 for d, w in zip(dicts, wrong, strict=True))
    assert (_verify_all(env, states, wrong) == 0.0).all()


def test_trace_checker_catches_wrong_lines():
    good = GOLDEN["closest"]
    check_trace(good, [3, 5, 7], 22, 999)
    for bad in [
        good.replace("7*3=21", "7*3=20"),  # wrong arithmetic
        good.replace("|5,21", "|5,20"),  # a node no equation made
        good.replace("21+5=26", "21+3=24"),  # 3 is not in the node [5, 21]
        good + ";15+7=22",  # a line after the hit
        good.replace("15+7=22", "15+7=22;15-7=8"),  # the hit is not the last line
    ]:
        with pytest.raises((AssertionError, ValueError)):
            check_trace(bad, [3, 5, 7], 22, 999)
