"""Backward-check demonstrations for three-number ``countdown-v0``: work back from the target, one number at a time.

Every answer over three numbers ends with one operation between a number ``z`` and a value ``v`` made from the
other two, ``a >= b``. The trace tries each ``z`` in the prompt's order and writes, for it:

* the **needs**: each value ``v`` that ``z`` can finish into the target, as the equation that gives it, in the
  fixed order ``T-z`` (for ``v+z``), ``T+z`` (``v-z``), ``z-T`` (``z-v``), ``T/z`` (``v*z``), ``T*z``
  (``v/z``), ``z/T`` (``z/v``), keeping only legal ones (``v`` in ``[1, max_value]``, ``/`` exact);
* ``|`` and the **haves**: what ``a`` and ``b`` make, ``a+b``, ``a-b``, ``a*b``, ``a/b`` (legal ones only), in
  that order, until one of them is a need;
* when a have is a need, ``<ans>`` and the expression; otherwise ``;`` and the next ``z``.

Example (``3,5,7:22``; for ``z = 3`` and ``z = 5`` no have is a need, for ``z = 7`` ``5*3=15`` is)::

    22-3=19,22+3=25,22*3=66|7+5=12,7-5=2,7*5=35;22-5=17,22+5=27,22*5=110|7+3=10,7-3=4,7*3=21;
    22-7=15,22+7=29,22*7=154|5+3=8,5-3=2,5*3=15<ans>5*3+7

(one line in the demonstration). ``?`` marks a trace cut by the token cap (see :func:`backward_demonstration`).
Each token is a function of the prompt and the line so far (no choice is left to the model but arithmetic and
"is this value among the needs"), the search is exhaustive, so it finds a solution whenever
:func:`countdown.solve` does (same legal steps), and it is at most three blocks long.
"""

from __future__ import annotations

from collections.abc import Sequence

from jaxrl_reason.envs.tasks.countdown_search import (
    CUT_MARK,
    LINE_SEP,
    NODE_MARK,
    apply_op,
    exact_op,
    render_expression,
)

NEED_SEP = ","
#: How each need finishes the answer: ``(equation operator, z first, final operator, v first)``.
_NEEDS = (
    ("-", False, "+", True),  # T-z = v: v+z
    ("+", False, "-", True),  # T+z = v: v-z
    ("-", True, "-", False),  # z-T = v: z-v
    ("/", False, "*", True),  # T/z = v: v*z
    ("*", False, "/", True),  # T*z = v: v/z
    ("/", True, "/", False),  # z/T = v: z/v
)


def _needs(z: int, target: int, max_value: int) -> list[tuple[str, int, tuple]]:
    """``(equation text, v, how v finishes)`` for every legal need of ``z``, in the fixed order."""
    out = []
    for op, z_first, final_op, v_first in _NEEDS:
        left, right = (z, target) if z_first else (target, z)
        v = apply_op(op, left, right, max_value)
        if v is not None:
            out.append((f"{left}{op}{right}={v}", v, (final_op, v_first)))
    return out


def _block(numbers: Sequence[int], k: int, target: int, max_value: int) -> tuple[str, str | None]:
    """The block of ``z = numbers[k]``: its text, and the answer when one of its haves is a need."""
    z = numbers[k]
    a, b = sorted((n for i, n in enumerate(numbers) if i != k), reverse=True)
    needs = _needs(z, target, max_value)
    haves = []
    answer = None
    for op in "+-*/":
        v = apply_op(op, a, b, max_value)
        if v is None:
            continue
        haves.append(f"{a}{op}{b}={v}")
        finish = next((how for _, need, how in needs if need == v), None)
        if finish is not None:
            final_op, v_first = finish
            tree = (final_op, (op, a, b), z) if v_first else (final_op, z, (op, a, b))
            answer = render_expression(tree)
            break
    return NEED_SEP.join(text for text, _, _ in needs) + NODE_MARK + NEED_SEP.join(haves), answer


def backward_demonstration(
    numbers: Sequence[int], target: int, *, max_value: int, max_tokens: int, answer_marker: str = "<ans>"
) -> str | None:
    """The backward-check trace of a three-number problem (module docstring), or None when no ``z`` works.

    ``max_tokens`` caps the demonstration (one token per character, one for the marker): when the trace is
    longer, failed blocks are dropped from the end, and ``?`` marks the jump to the block that solves it;
    ValueError when that block alone does not fit.
    """
    return _trace(numbers, target, lambda k: _block(list(numbers), k, target, max_value), max_tokens, answer_marker)


def _trace(numbers, target: int, block, max_tokens: int, answer_marker: str) -> str | None:
    """The blocks ``block(k)`` for each ``z = numbers[k]`` up to the first that answers, cut by :func:`_fit`."""
    if len(numbers) != 3:
        raise ValueError(f"backward demonstrations are for three numbers, got {list(numbers)}")
    failed = []
    for k in range(3):
        text, answer = block(k)
        if answer is None:
            failed.append(text)
            continue
        return _fit(failed, text, answer_marker, answer, max_tokens, f"{list(numbers)}:{target}")
    return None


# -- the same search with a calculator ----------------------------------------------------------------------
#: The needs a calculator trace writes for ``z`` against target ``T``: ``_NEEDS``'s ``(op, z first, final op, v
#: first)`` and ``when(z, T)``, whether it is written (a comparison, never a division or a product).
_CALC_NEEDS = tuple(
    (*need, when)
    for need, when in zip(
        _NEEDS,
        (
            lambda z, t: t > z,  # T-z
            lambda z, t: True,  # T+z
            lambda z, t: z > t,  # z-T
            lambda z, t: True,  # T/z (the calculator answers "?" when inexact)
            lambda z, t: True,  # T*z
            lambda z, t: z >= t,  # z/T
        ),
        strict=True,
    )
)


def _calc_block(numbers: Sequence[int], k: int, target: int, call) -> tuple[str, str | None]:
    """The calculator block of ``z = numbers[k]``: its text, and the answer when one of its haves is a need."""
    z = numbers[k]
    a, b = sorted((n for i, n in enumerate(numbers) if i != k), reverse=True)
    needs, texts = [], []
    for op, z_first, final_op, v_first, when in _CALC_NEEDS:
        if when(z, target):
            text, v = call(*((z, op, target) if z_first else (target, op, z)))
            texts.append(text)
            needs.append((v, final_op, v_first))
    texts.append(NODE_MARK)
    for op in "+-*/":
        if op == "-" and a == b:
            continue  # 0 is never a need that is written
        text, v = call(a, op, b)
        texts.append(text)
        finish = next(((f, first) for need, f, first in needs if v is not None and need == v), None)
        if finish is not None:
            final_op, v_first = finish
            tree = (final_op, (op, a, b), z) if v_first else (final_op, z, (op, a, b))
            return "".join(texts), render_expression(tree)
    return "".join(texts), None


def calc_backward_demonstration(
    numbers: Sequence[int],
    target: int,
    *,
    max_tokens: int,
    open: str = "[",
    close: str = "]",
    answer_marker: str = "<ans>",
) -> str | None:
    """The backward-check trace of a three-number problem with every value written by a calculator.

    The search of :func:`backward_demonstration`, with each equation a calculator call ``[T-z=`` answered
    ``v]`` by the env, so the model does no arithmetic: the needs are every finishing equation whose sign
    a comparison settles (``T-z`` when ``T > z``, ``T+z``, ``z-T`` when ``z > T``, ``T/z``, ``T*z``, ``z/T``
    when ``z >= T``; the calculator answers ``?`` to an inexact division), the haves ``a+b``, ``a-b`` (when
    ``a > b``), ``a*b``, ``a/b``; the block stops at the first have equal to a need. Example (``3,5,7:22``)::

        [22-3=19][22+3=25][22/3=?][22*3=66]|[7+5=12][7-5=2][7*5=35][7/5=?];[22-5=17]...
        ...;[22-7=15][22+7=29][22/7=?][22*7=154]|[5+3=8][5-3=2][5*3=15]<ans>5*3+7

    Cut to ``max_tokens`` like :func:`backward_demonstration`; None when no ``z`` works.
    """

    def call(x: int, op: str, y: int) -> tuple[str, int | None]:
        v = exact_op(op, x, y)
        return f"{open}{x}{op}{y}={'?' if v is None else v}{close}", v

    return _trace(numbers, target, lambda k: _calc_block(list(numbers), k, target, call), max_tokens, answer_marker)


def _fit(failed: list[str], text: str, marker: str, answer: str, max_tokens: int, problem: str) -> str:
    """``failed`` blocks, then the solving block ``text``, ``marker`` and ``answer``, cut to ``max_tokens`` (one
    token per character, one for the marker): failed blocks are dropped from the end, ``?`` marks the jump."""
    tail_tokens = len(text) + 1 + len(answer)
    if len(LINE_SEP.join([*failed, text])) + 1 + len(answer) <= max_tokens:
        return LINE_SEP.join([*failed, text + marker + answer])
    if 1 + tail_tokens > max_tokens:
        raise ValueError(
            f"the solving block of {problem} takes {1 + tail_tokens} tokens with the '?', "
            f"more than max_demo_tokens={max_tokens}"
        )
    while failed and len(LINE_SEP.join(failed)) + 1 + tail_tokens > max_tokens:
        failed.pop()
    return LINE_SEP.join(failed) + CUT_MARK + text + marker + answer
