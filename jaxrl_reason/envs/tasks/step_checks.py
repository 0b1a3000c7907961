"""Exact step checkers: ground truth for process supervision (what PRM labels are measured against).

A **step** is a segment of the response that ends with ``","`` before the answer marker (addition: one
column, ``"5+6+1=12,"``; countdown: one operation, ``"5*3=15,"``). A task exposes its checker as
``task.step_labels(problem_dict, response_text)`` (:meth:`ReasoningTask.step_labels`).
"""

from __future__ import annotations

import re

_ADD_STEP = re.compile(r"^(\d)\+(\d)(\+1)?=(\d+),$")
_CD_STEP = re.compile(r"^(\d+)([-+*/])(\d+)=(\d+),$")


def split_steps(response_text: str, answer_marker: str) -> tuple[list[str], str | None]:
    """``"7+8=15,5+6+1=12,<ans>125"`` -> ``(["7+8=15,", "5+6+1=12,"], "<ans>125")``; the answer step is
    None when there is no marker (an unfinished tail without ``","`` is then dropped)."""
    head, marker, tail = response_text.partition(answer_marker)
    steps = [s + "," for s in head.split(",")[:-1]]
    return steps, (marker + tail) if marker else None


def addition_step_ok(problem: dict, index: int, step: str) -> bool:
    """Whether column step `index` (0 = ones) is the true column: digits of a and b, carry-in, sum."""
    m = _ADD_STEP.match(step)
    if not m:
        return False
    a, b = problem["a"], problem["b"]
    columns = max(len(str(a)), len(str(b)))
    if index >= columns:
        return False
    da, db = (a // 10**index) % 10, (b // 10**index) % 10
    carry = int((a % 10**index) + (b % 10**index) >= 10**index) if index else 0
    total = da + db + carry
    return (
        int(m.group(1)) == da
        and int(m.group(2)) == db
        and (m.group(3) is not None) == bool(carry)
        and m.group(4) == str(total)
    )


def countdown_steps_ok(problem: dict, steps: list[str]) -> list[bool]:
    """Per step: ``a op b = c`` is exact arithmetic (``/`` exact, no negative results) on two numbers still
    available (the given numbers and earlier results, each used once), and all earlier steps were too."""
    pool = list(problem["numbers"])
    out, ok = [], True
    for step in steps:
        m = _CD_STEP.match(step)
        if ok and m:
            a, op, b, c = int(m.group(1)), m.group(2), int(m.group(3)), int(m.group(4))
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
            rest = list(pool)
            have = a in rest and (rest.remove(a) or True) and b in rest
            if have and value is not None and value >= 0 and value == c and str(c) == m.group(4):
                rest.remove(b)
                pool = [*rest, c]
            else:
                ok = False
        else:
            ok = False
        out.append(ok)
    return out


def addition_steps_ok(problem: dict, steps: list[str]) -> list[bool]:
    """Per step: it and every earlier step are the true columns (:func:`addition_step_ok`)."""
    ok, out = True, []
    for i, step in enumerate(steps):
        ok = ok and addition_step_ok(problem, i, step)
        out.append(ok)
    return out
