"""Countdown demonstrations with the calculator tool: golden traces, a brute-force reference for when a trace
finds an answer, replay through the ToolUse env (the env writes every value), the cap."""

import functools
import itertools
import re

import jax
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import countdown_backward as cb
from jaxrl_reason.envs.tools import calculate_text

ANS = jr.DEFAULT_TOKENIZER.answer_marker

# Worked by hand. z=3 (T=22 > 3): needs 22-3, 22+3, 22/3 (inexact: "?"), 22*3; no z-T, z/T (z < T). Haves of
# (7,5): 12, 2, 35, ? - none is a need. z=5 likewise. z=7: needs 15, 29, ?, 154; (5,3) make 8, 2, then 15 =
# the need 22-7: the answer 5*3+7 (and the have 5/3 is never written).
GOLDEN_3_5_7 = (
    "[22-3=19][22+3=25][22/3=?][22*3=66]|[7+5=12][7-5=2][7*5=35][7/5=?];"
    "[22-5=17][22+5=27][22/5=?][22*5=110]|[7+3=10][7-3=4][7*3=21][7/3=?];"
    "[22-7=15][22+7=29][22/7=?][22*7=154]|[5+3=8][5-3=2][5*3=15]" + ANS + "5*3+7"
)


@functools.cache
def calc_env(style="backward"):
    return jr.make("countdown-v0", num_numbers=3, demo_style=style, tools=("calc",), max_response_length=272)


def test_golden_traces():
    assert calc_env().demonstration({"numbers": [3, 5, 7], "target": 22}) == GOLDEN_3_5_7
    # 24,5,7 -> 2 with z=24 > T: needs 2+24=26, 24-2=22, 2/24=?, 2*24=48, 24/2=12; (7,5) make 12 = 24/2 at
    # once: the answer is z/v.
    got = calc_env().demonstration({"numbers": [24, 5, 7], "target": 2})
    assert got == "[2+24=26][24-2=22][2/24=?][2*24=48][24/2=12]|[7+5=12]" + ANS + "24/(7+5)"
    # Equal numbers: 6-6 = 0 is never a written need, so the call is not written.
    got = cb.calc_backward_demonstration([4, 6, 6], 144, max_tokens=10**6)
    assert got == "[144-4=140][144+4=148][144/4=36][144*4=576]|[6+6=12][6*6=36]<ans>6*6*4"


def test_path_style_writes_each_step_as_a_call_and_search_stays_plain():
    d = {"numbers": [3, 5, 7], "target": 22}
    path = calc_env("path").demonstration(d)
    assert re.fullmatch(r"(\[\d+[-+*/]\d+=\d+\])+" + re.escape(ANS) + r"[-+*/()\d]+", path), path
    plain = jr.make("countdown-v0", num_numbers=3, demo_style="path").demonstration(d)
    assert path.replace("[", "").replace("]", ",") == plain
    search = jr.make("countdown-v0", num_numbers=3, demo_style="search", tools=("calc",))
    assert search.demonstration(d) == search.task.demonstration(d)


def _brute_force_solvable(numbers, target):
    """Whether some ``(a op b) op' z`` or ``z op' (a op b)`` hits the target in exact arithmetic (inner value >= 1)."""
    for k in range(3):
        z = numbers[k]
        a, b = sorted((n for i, n in enumerate(numbers) if i != k), reverse=True)
        for op in "+-*/":
            v = calculate_text(f"{a}{op}{b}")
            if v is None or int(v) < 1:
                continue
            for op2, (lhs, rhs) in itertools.product("+-*/", ((int(v), z), (z, int(v)))):
                r = calculate_text(f"{lhs}{op2}{rhs}")
                if r is not None and int(r) == target:
                    return True
    return False


def _check_calls(trace: str):
    for call, answer in re.findall(r"\[([^=\]]+)=([^\]]*)\]", trace):
        assert answer == (calculate_text(call) or "?"), (call, answer)


def test_traces_answer_exactly_when_brute_force_does_and_every_value_is_the_calculators():
    rng = np.random.default_rng(0)
    env = calc_env()
    found = 0
    for _ in range(600):
        numbers = [int(x) for x in rng.integers(1, 13, size=3)]
        target = int(rng.integers(1, 30))
        demo = cb.calc_backward_demonstration(numbers, target, max_tokens=10**6)
        assert (demo is not None) == _brute_force_solvable(numbers, target), (numbers, target, demo)
        if demo is None:
            continue
        found += 1
        _check_calls(demo)
        assert env.score_text({"numbers": numbers, "target": target}, demo) == 1.0, demo
        assert demo.count(";") <= 2 and all(block.count("|") == 1 for block in demo.split(ANS)[0].split(";"))
    assert 150 < found < 500, found  # both outcomes occur often


def test_demonstrations_replay_through_the_env_with_env_written_values():
    env = calc_env()
    step = jax.jit(env.step)
    probs = jax.vmap(env.sample_problem)(jax.random.split(jax.random.PRNGKey(3), 6))
    tok = env.tokenizer
    for i in range(6):
        d = env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], probs))
        demo = env.demonstration(d)
        state = env.init_from_problem(env.problem_from_dict(d))
        for token in tok.encode(demo + tok.eos):
            assert bool(state.legal_action_mask[token]), (demo, tok.decode([token]))
            state = step(state, token)
        assert float(state.rewards[0]) == 1.0 and bool(state.terminated)
        written = tok.decode(np.asarray(state.tokens)[np.asarray(env.written_mask(state))])
        assert written == "".join(a + "]" for a in re.findall(r"=([^\]]*)\]", demo)), demo


def test_every_sampled_trace_fits_and_the_cap_drops_failed_blocks():
    env = calc_env()
    probs = jax.vmap(env.sample_problem)(jax.random.split(jax.random.PRNGKey(5), 300))
    for i in range(300):
        d = env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], probs))
        assert cb.CUT_MARK + "[" not in env.demonstration(d)  # 272 holds the longest default trace uncut
    full = GOLDEN_3_5_7.replace(ANS, "<ans>")
    solving = full.split(";")[2]
    n = len(solving) - len("<ans>") + 1
    assert cb.calc_backward_demonstration([3, 5, 7], 22, max_tokens=n + 1) == "?" + solving
    with pytest.raises(ValueError, match="max_demo_tokens=" + str(n)):
        cb.calc_backward_demonstration([3, 5, 7], 22, max_tokens=n)
