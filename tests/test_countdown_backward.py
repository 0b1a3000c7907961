"""Backward-check demonstrations of three-number countdown: golden traces, an independent line checker, the cap."""

import functools

import jax
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import countdown_backward as cb
from jaxrl_reason.envs.tasks.countdown import solve

ANS = jr.DEFAULT_TOKENIZER.answer_marker

# Worked by hand. z=3: needs 22-3=19, 22+3=25, 22*3=66 (22/3 and 3-22, 3/22 are not legal); haves of (7,5):
# 12, 2, 35, (7/5 not exact): none is a need. z=5: needs 17, 27, 110; haves of (7,3): 10, 4, 21 (7/3 not
# exact). z=7: needs 15, 29, 154; haves of (5,3): 8, 2, 15 = the need 22-7: answer 5*3+7.
GOLDEN_3_5_7 = (
    "22-3=19,22+3=25,22*3=66|7+5=12,7-5=2,7*5=35;22-5=17,22+5=27,22*5=110|7+3=10,7-3=4,7*3=21;"
    "22-7=15,22+7=29,22*7=154|5+3=8,5-3=2,5*3=15" + ANS + "5*3+7"
)


@functools.cache
def env3():
    return jr.make("countdown-v0", num_numbers=3, demo_style="backward")


def test_golden_traces():
    assert env3().demonstration({"numbers": [3, 5, 7], "target": 22}) == GOLDEN_3_5_7
    # 24,5,7 -> 2: z=24 needs 2+24=26, 24-2=22, 2*24=48, 24/2=12 (z-T, z/T legal; T-z, T/z not); (7,5) make 12
    # at their first have, which is the need z/T: the answer is 24/(7+5).
    got = env3().demonstration({"numbers": [24, 5, 7], "target": 2})
    assert got == "2+24=26,24-2=22,2*24=48,24/2=12|7+5=12" + ANS + "24/(7+5)"
    # A z-v finish: 20,3,2 -> 14: z=20 needs 14-20 (illegal), 14+20=34, 20-14=6, ... ; (3,2) make 5, 1, 6.
    got = env3().demonstration({"numbers": [20, 3, 2], "target": 14})
    assert got.endswith("|3+2=5,3-2=1,3*2=6" + ANS + "20-3*2")


def _check_block(block: str, numbers: list[int], k: int, target: int) -> bool:
    """Re-derives one block from the rules; fails the test on any wrong line. True when its last have is a need."""
    needs_text, haves_text = block.split("|")
    z = numbers[k]
    a, b = sorted((n for i, n in enumerate(numbers) if i != k), reverse=True)
    want_needs = []
    for left, op, right in ((target, "-", z), (target, "+", z), (z, "-", target), (target, "/", z)):
        want_needs.append((left, op, right))
    want_needs += [(target, "*", z), (z, "/", target)]
    legal = []
    for left, op, right in want_needs:
        v = {"+": left + right, "-": left - right, "*": left * right}.get(op)
        if op == "/":
            v = left // right if left % right == 0 else None
        if v is not None and 1 <= v <= 999:
            legal.append(f"{left}{op}{right}={v}")
    assert needs_text.split(",") == legal, (block, legal)
    needs = {int(t.split("=")[1]) for t in legal}
    want_haves = [f"{a}{op}{b}={v}" for op, v in (("+", a + b), ("-", a - b), ("*", a * b)) if 1 <= v <= 999]
    if a % b == 0:
        want_haves.append(f"{a}/{b}={a // b}")
    haves = haves_text.split(",")
    hits = [int(t.split("=")[1]) in needs for t in haves]
    assert haves == want_haves[: len(haves)], (block, want_haves)
    assert not any(hits[:-1]) and (hits[-1] or len(haves) == len(want_haves)), block  # stops at the first hit
    return hits[-1]


def test_traces_are_exhaustive_and_correct_on_sampled_problems():
    env = env3()
    probs = jax.vmap(env.sample_problem)(jax.random.split(jax.random.PRNGKey(7), 400))
    for i in range(400):
        d = env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], probs))
        demo = env.demonstration(d)
        trace, answer = demo.split(ANS)
        assert env.score_text(d, demo) == 1.0, demo
        blocks = trace.split(";")
        assert 1 <= len(blocks) <= 3
        hits = [_check_block(block, d["numbers"], k, d["target"]) for k, block in enumerate(blocks)]
        assert hits == [False] * (len(blocks) - 1) + [True]
        assert answer.count("(") <= 1 and sorted(
            map(
                int,
                answer.replace("(", " ")
                .replace(")", " ")
                .replace("+", " ")
                .replace("-", " ")
                .replace("*", " ")
                .replace("/", " ")
                .split(),
            )
        ) == sorted(d["numbers"])


def test_finds_a_solution_exactly_when_solve_does():
    cases = [([10, 10, 10], 1), ([1, 1, 1], 25), ([2, 3, 4], 24), ([25, 25, 25], 999), ([9, 8, 7], 504)]
    for numbers, target in cases:
        found = cb.backward_demonstration(numbers, target, max_value=999, max_tokens=10**6)
        assert (found is None) == (solve(numbers, target, 999) is None), (numbers, target)


def test_cap_drops_failed_blocks_and_marks_the_jump():
    full = cb.backward_demonstration([3, 5, 7], 22, max_value=999, max_tokens=10**6)
    assert full == GOLDEN_3_5_7.replace(ANS, "<ans>")
    solving = "22-7=15,22+7=29,22*7=154|5+3=8,5-3=2,5*3=15<ans>5*3+7"
    first = "22-3=19,22+3=25,22*3=66|7+5=12,7-5=2,7*5=35"
    assert cb.backward_demonstration([3, 5, 7], 22, max_value=999, max_tokens=100) == first + "?" + solving
    n = len(solving) - len("<ans>") + 1  # tokens of the solving block with its answer
    assert cb.backward_demonstration([3, 5, 7], 22, max_value=999, max_tokens=n + 1) == "?" + solving
    with pytest.raises(ValueError, match="max_demo_tokens=" + str(n)):
        cb.backward_demonstration([3, 5, 7], 22, max_value=999, max_tokens=n)


def test_backward_needs_three_numbers():
    with pytest.raises(ValueError, match="needs num_numbers=3"):
        jr.make("countdown-v0", num_numbers=4, demo_style="backward")
    with pytest.raises(ValueError, match="three numbers"):
        cb.backward_demonstration([1, 2], 3, max_value=999, max_tokens=100)
    env = env3()
    assert env.spec.max_length - env.max_prompt_length == 192  # room for the longest trace seen (190) and EOS
