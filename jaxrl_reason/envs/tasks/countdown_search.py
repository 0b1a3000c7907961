"""Stream-of-search demonstrations for ``countdown-v0``: the trace of a search, not just its result.

A symbolic solver explores the countdown tree (a node is the multiset of numbers left; a child picks
two of them ``a >= b`` and an operation, and replaces them with the result) and writes what it does:

* an **equation line** ``a op b=r`` for every child it generates from the node being expanded;
  ``r`` must lie in ``[1, max_value]`` (``-`` only when ``a > b``, ``/`` only when exact), the
  rules of :func:`countdown.solve`, so every line is a valid step of a valid answer;
* a **node line** ``|v1,v2,...`` whenever the search moves to expand another node than the one the
  previous equation came from: its numbers are the parent's numbers in their order without the
  first ``a`` and then the first ``b``, then ``r`` (equal lines from equal numbers are one child, so
  a line fixes its child from the values alone). The root (the prompt's numbers) is expanded first, without a node line.
  Backtracking in DFS is a node line whose node has more numbers than the previous one;
* lines are joined by ``;`` (a node line's ``|`` is its own separator);
* a child with one number left is a leaf: when ``r`` equals the target the search stops and the
  trace ends with ``<ans>`` and the expression of that path.

So every line is checkable locally: an equation is right when ``a`` and ``b`` are (distinct) numbers
of the last node line (or of the prompt before the first one) and ``r`` is ``a op b``; a node line is
right when it is the child of an equation of its parent's node. Example (``3,5,7:22``, ``closest``)::

    7*3=21|5,21;21+5=26|3,5,7;5*3=15|7,15;15+7=22<ans>5*3+7

(``7*3=21`` is nearest 22 of the root's children; its only leaf ``21+5=26`` misses, so the search
moves back to the root and tries the next nearest, ``5*3=15``.)

Orders: ``dfs`` (depth first; pairs ``(i, j)`` in index order, then ``+ - * /``), ``bfs`` (breadth
first, same child order, the goal test when a leaf is generated) and ``closest`` (depth first with
the children ordered by ``|r - target|``, nearest first, ties in ``dfs`` order; a node with two
numbers writes only its nearest child, since when that misses every other child misses too).

A cap ``max_tokens`` bounds the whole demonstration (reasoning, ``<ans>`` and answer). When the
search does not finish within it, the trace is cut after a whole line, a ``?`` marks the cut, and a
known solution (the fallback, e.g. :func:`countdown.solve`'s) follows from the root in the same
notation, so the answer is always correct::

    7*3=21|5,21?5*3=15|7,15;15+7=22<ans>5*3+7      (max_tokens=40)

Lines are dropped from the end of the cut trace until the fallback fits; when it does not fit even
alone, the demonstration is the fallback without ``?``; when the fallback alone exceeds the cap,
ValueError.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator, Sequence
from typing import NamedTuple

ORDERS = ("dfs", "bfs", "closest")
#: Characters the notation adds to countdown's response alphabet (all in the default tokenizer).
SEARCH_ALPHABET = ";|?"
LINE_SEP, NODE_MARK, CUT_MARK = ";", "|", "?"
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}

Expr = int | tuple  # a number, or (op, left, right)


class _Node(NamedTuple):
    values: tuple[int, ...]
    exprs: tuple[Expr, ...]  # how each value was made from the prompt's numbers


class _Child(NamedTuple):
    line: str  # "a op b=r"
    result: int
    node: _Node


def render_expression(node: Expr) -> str:
    """Infix text of an expression tree with the fewest parentheses that keep its order of operations."""
    if isinstance(node, int):
        return str(node)
    op, left, right = node
    ls, rs = render_expression(left), render_expression(right)
    if isinstance(left, tuple) and _PREC[left[0]] < _PREC[op]:
        ls = f"({ls})"
    if isinstance(right, tuple):
        rp = _PREC[right[0]]
        assoc_ok = op == "+" or (op == "*" and right[0] == "*")
        if rp < _PREC[op] or (rp == _PREC[op] and not assoc_ok):
            rs = f"({rs})"
    return ls + op + rs


def exact_op(op: str, a: int, b: int) -> int | None:
    """``a op b`` in exact integer arithmetic (``op`` one of ``+-*/``); None for a division by zero or with a
    remainder. The one arithmetic of the Python side of countdown (the verifier's twin and the search)."""
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a // b if b and a % b == 0 else None


def apply_op(op: str, a: int, b: int, max_value: int) -> int | None:
    """``a op b`` when it is a legal step (result in ``[1, max_value]``, ``/`` exact), else None."""
    r = exact_op(op, a, b)
    return r if r is not None and 1 <= r <= max_value else None


def _without(node: _Node, a: int, b: int) -> tuple[list[int], list[Expr]]:
    """The node's values and expressions without the first ``a`` and then the first ``b`` (by value)."""
    values, exprs = list(node.values), list(node.exprs)
    for v in (a, b):
        k = values.index(v)
        del values[k], exprs[k]
    return values, exprs


def _children(node: _Node, target: int, max_value: int, order: str) -> list[_Child]:
    """Children in the order searched. Equal lines (from equal numbers) are one child, whose node drops
    the first ``a`` and ``b`` of the parent, so a line determines its child from the values alone."""
    out, seen = [], set()
    values = node.values
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            a, b = max(values[i], values[j]), min(values[i], values[j])
            for op in "+-*/":
                r = apply_op(op, a, b, max_value)
                line = f"{a}{op}{b}={r}"
                if r is None or line in seen:
                    continue
                seen.add(line)
                rest, exprs = _without(node, a, b)
                ea, eb = node.exprs[values.index(a)], node.exprs[_second_index(values, a, b)]
                out.append(_Child(line, r, _Node((*rest, r), (*exprs, (op, ea, eb)))))
    if order == "closest":
        out.sort(key=lambda c: abs(c.result - target))
        if len(values) == 2:
            out = out[:1]
    return out


def _second_index(values: tuple[int, ...], a: int, b: int) -> int:
    """Index of the ``b`` that :func:`_without` removes after the first ``a``."""
    first_a = values.index(a)
    return next(k for k, v in enumerate(values) if v == b and k != first_a)


def _node_line(node: _Node) -> str:
    return NODE_MARK + ",".join(map(str, node.values))


def _expansions(root: _Node, target: int, max_value: int, order: str) -> Iterator[tuple[_Node, _Child]]:
    """``(expanded node, generated child)`` in the order the search generates them."""
    if order == "bfs":
        queue = collections.deque([root])
        while queue:
            node = queue.popleft()
            for child in _children(node, target, max_value, order):
                yield node, child
                if len(child.node.values) > 1:
                    queue.append(child.node)
        return
    stack = [(root, iter(_children(root, target, max_value, order)))]
    while stack:
        node, todo = stack[-1]
        child = next(todo, None)
        if child is None:
            stack.pop()
            continue
        yield node, child
        if len(child.node.values) > 1:
            stack.append((child.node, iter(_children(child.node, target, max_value, order))))


def _search_pieces(root: _Node, target: int, max_value: int, order: str) -> Iterator[str | _Node]:
    """The trace's pieces (each one line with its leading separator), then the solved leaf (if any)."""
    current = root
    first = True
    for node, child in _expansions(root, target, max_value, order):
        if node is not current:
            yield _node_line(node)
            current = node
        yield ("" if first else LINE_SEP) + child.line
        first = False
        if len(child.node.values) == 1 and child.result == target:
            yield child.node
            return


def path_text(numbers: Sequence[int], steps: Sequence[tuple[int, str, int, int]]) -> str:
    """A solution's steps ``(a, op, b, r)`` from the root in the search notation."""
    values = list(numbers)
    pieces = []
    for a, op, b, r in steps:
        for v in (a, b):
            if v not in values:
                raise ValueError(f"step {a}{op}{b}={r} of a countdown solution uses {v}, not among {values}")
            values.remove(v)
        values.append(r)
        pieces.append((LINE_SEP if pieces else "") + f"{a}{op}{b}={r}")
        if len(values) > 1:
            pieces.append(NODE_MARK + ",".join(map(str, values)))
    return "".join(pieces)


def search_demonstration(
    numbers: Sequence[int],
    target: int,
    *,
    max_value: int,
    order: str,
    max_tokens: int,
    fallback: tuple[Sequence[tuple[int, str, int, int]], str],
    answer_marker: str = "<ans>",
) -> str:
    """A stream-of-search demonstration (see module docstring): ``trace <ans> expression``.

    ``fallback = (steps, expression)`` is a known solution, used when the search is cut by
    ``max_tokens`` (counted as tokens: one per character, one for the marker). Stops generating as
    soon as the trace passes the cap, so the cost is bounded even for 6 numbers.
    """
    if order not in ORDERS:
        raise ValueError(f"search order must be one of {ORDERS}, got {order!r}")
    root = _Node(tuple(numbers), tuple(numbers))
    pieces: list[str] = []
    length = 0
    for piece in _search_pieces(root, target, max_value, order):
        if isinstance(piece, _Node):
            answer = render_expression(piece.exprs[0])
            if length + 1 + len(answer) <= max_tokens:
                return "".join(pieces) + answer_marker + answer
            break
        if length + len(piece) > max_tokens:
            break
        pieces.append(piece)
        length += len(piece)
    return _cut(pieces, length, numbers, fallback, max_tokens, answer_marker)


def _cut(pieces, length, numbers, fallback, max_tokens, answer_marker) -> str:
    steps, expression = fallback
    tail = path_text(numbers, steps)
    tail_tokens = len(tail) + 1 + len(expression)
    while pieces and length + 1 + tail_tokens > max_tokens:
        length -= len(pieces.pop())
    if not pieces:
        if tail_tokens > max_tokens:
            raise ValueError(
                f"the solution of {list(numbers)} takes {tail_tokens} tokens, more than max_demo_tokens={max_tokens}"
            )
        return tail + answer_marker + expression
    return "".join(pieces) + CUT_MARK + tail + answer_marker + expression
