"""``countdown-v0``: combine the given numbers with ``+ - * /`` to hit the target.

Prompt ``"{n1},{n2},...:{target}"`` (e.g. ``"3,5,7:22"``). Answer: an infix expression over the
characters ``0-9 + - * / ( )`` that uses every given number exactly once (as a multiset) and
evaluates exactly to the target, e.g. ``"3*5+7"``. Rules (the JAX verifier and the Python reference
implement the same ones; see docs/envs.md):

* standard precedence (``* /`` over ``+ -``), left-associative, parentheses nest freely;
* no unary minus, no implicit multiplication, no spaces or other characters;
* a number literal is canonical (no leading zero) with at most as many digits as ``max_number``;
* ``/`` must divide exactly (a remainder, or division by zero, makes the answer wrong);
* every intermediate value must satisfy ``|v| <= VALUE_BOUND`` (10**6), so int32 never overflows;
  negative intermediates are allowed.

Problems are reachable by construction: numbers are drawn uniformly, then random pairs are combined
with random valid operations (intermediates kept in ``[1, max_target]``, ``-`` only when positive,
``/`` only when exact) until one value is left: the target. Demonstration: the operations of a
solution (found by a memoized search over pairwise combinations), then the expression::

    5*3=15,15+7=22,<ans>5*3+7
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tasks import _text, countdown_backward, countdown_parser, countdown_search
from jaxrl_reason.envs.tasks.base import ReasoningTask, as_problem_dict_value
from jaxrl_reason.envs.tasks.step_checks import countdown_steps_ok
from jaxrl_reason.types import Array, PRNGKey, Problem

VALUE_BOUND = 10**6  # |intermediate| above this makes an answer wrong (int32-safe: checked before it overflows)
MAX_NUMBERS = 6
OPS = "+-*/()"
DEMO_STYLES = ("path", "search", "backward")
#: Default max_response_length of search-style demos by the largest count of numbers (see docs/envs.md).
SEARCH_RESPONSE_LENGTH = {2: 64, 3: 256, 4: 1024, 5: 1024, 6: 1024}
#: Default max_response_length of backward-check demos (three numbers; the longest of 4,000 default problems: 190).
BACKWARD_RESPONSE_LENGTH = 192
_NUM_TRIES = 4  # candidate trees per problem; the first whose target is not trivial is kept


class _Invalid(Exception):
    pass


def _binop(op: str, a: int, b: int) -> int:
    """Python twin of the verifier's arithmetic (raises _Invalid)."""
    r = countdown_search.exact_op(op, a, b)
    if r is None:
        raise _Invalid("division by zero or not exact")
    if abs(r) > VALUE_BOUND:
        raise _Invalid("intermediate value out of bounds")
    return r


def _tokenize(text: str, max_literal_digits: int) -> list | None:
    """Literals (ints) and operator characters of `text`, or None for a bad character or literal."""
    tokens, i = [], 0
    while i < len(text):
        c = text[i]
        if c in _text.DIGITS:
            j = i
            while j < len(text) and text[j] in _text.DIGITS:
                j += 1
            value = _text.parse_decimal_text(text[i:j], max_literal_digits)
            if value is None:
                return None
            tokens.append(value)
            i = j
        elif c in OPS:
            tokens.append(c)
            i += 1
        else:
            return None
    return tokens


class _Frame:
    """One parenthesis level: ``total (addop) term (mulop) ...`` (the JAX parser's frame)."""

    __slots__ = ("total", "addop", "term", "mulop")

    def __init__(self):
        self.total, self.addop, self.term, self.mulop = None, None, None, None

    def feed(self, v: int) -> None:
        """A factor's value: starts the term or applies the pending ``*`` or ``/``."""
        self.term = v if self.mulop is None else _binop(self.mulop, self.term, v)
        self.mulop = None

    def value(self) -> int:
        """The level's value so far: ``total (addop) term``."""
        return self.term if self.addop is None else _binop(self.addop, self.total, self.term)


def evaluate_text(text: str, max_literal_digits: int) -> tuple[int, list[int]] | None:
    """Python reference evaluator (never eval): ``(value, literals)`` or None.

    The grammar ``expr := term (+|- term)*``, ``term := factor (*|/ factor)*``, ``factor := literal |
    ( expr )`` evaluated left-associatively, with an explicit stack of frames instead of recursion, so
    any nesting depth works (no RecursionError).
    """
    tokens = _tokenize(text, max_literal_digits)
    if tokens is None:
        return None
    literals: list[int] = []
    stack: list[_Frame] = []
    frame, expect = _Frame(), True  # expect: an operand (literal or "(") must come next
    try:
        for t in tokens:
            if expect and isinstance(t, int):
                literals.append(t)
                frame.feed(t)
                expect = False
            elif expect and t == "(":
                stack.append(frame)
                frame = _Frame()
            elif not expect and t in ("+", "-"):
                frame.total, frame.addop, frame.term, expect = frame.value(), t, None, True
            elif not expect and t in ("*", "/"):
                frame.mulop, expect = t, True
            elif not expect and t == ")" and stack:
                value, frame = frame.value(), stack.pop()
                frame.feed(value)
            else:
                return None
        if expect or stack:
            return None
        return frame.value(), literals
    except _Invalid:
        return None


def solve(numbers: list[int], target: int, max_value: int):
    """A solution as ``(steps, expression)``, or None: memoized search over pairwise combinations.

    Intermediates stay in ``[1, max_value]``; ``steps`` are ``(a, op, b, result)`` with ``a >= b``.
    """
    failed: set[tuple[int, ...]] = set()

    def search(items):
        if len(items) == 1:
            return [] if items[0][0] == target else None
        key = tuple(sorted(v for v, _ in items))
        if key in failed:
            return None
        for i in range(len(items)):
            for j in range(i + 1, len(items)):
                (a, ea), (b, eb) = sorted((items[i], items[j]), key=lambda x: -x[0])
                rest = [x for k, x in enumerate(items) if k not in (i, j)]
                for op, r in (("+", a + b), ("-", a - b), ("*", a * b), ("/", a // b if a % b == 0 else 0)):
                    if not 1 <= r <= max_value:
                        continue
                    found = search([*rest, (r, (op, ea, eb))])
                    if found is not None:
                        return [(a, op, b, r), *found]
        failed.add(key)
        return None

    items = [(v, v) for v in numbers]
    steps = search(items)
    if steps is None:
        return None
    # Rebuild the expression tree along the steps (values identify the items in play).
    pool = list(items)
    for a, op, b, r in steps:
        ia = next(k for k, x in enumerate(pool) if x[0] == a)
        ea = pool.pop(ia)[1]
        ib = next(k for k, x in enumerate(pool) if x[0] == b)
        eb = pool.pop(ib)[1]
        pool.append((r, (op, ea, eb)))
    return steps, countdown_search.render_expression(pool[0][1])


class Countdown(ReasoningTask):
    """Reach a target from ``num_numbers`` numbers with ``+ - * /`` (see module docstring).

    Problem pytree: ``{"numbers": [K] int32`` (0-padded), ``"count": [] int32, "target": [] int32}``
    with ``K`` the largest count. Difficulty: ``num_numbers`` an int or ``(min, max)`` range within
    ``[2, 6]`` (default 4), ``max_number`` in ``[1, 999]`` (default 25; numbers are uniform in
    ``[1, max_number]``), ``max_target`` in ``[1, 99999]`` (default 999; also bounds every intermediate
    of the generator and of the demonstrations).

    Demonstrations: ``demo_style="path"`` (default) writes a solution's steps; ``"search"`` writes the
    trace of a search in ``search_order`` (``"dfs"``, ``"bfs"`` or ``"closest"``, the default) capped at
    ``max_demo_tokens`` (see :mod:`countdown_search`; it adds ``; | ?`` to the response alphabet);
    ``"backward"`` (three numbers only) writes, for each number in turn, the values the other two must make
    and what they make, until one fits (see :mod:`countdown_backward`; same alphabet).
    """

    env_id = "countdown-v0"
    response_alphabet = _text.DIGITS + OPS + "=,"
    reward_needs_answer = False  # the check reads only the numbers and the target

    def __init__(
        self,
        *,
        num_numbers: int | tuple[int, int] = 4,
        max_number: int = 25,
        max_target: int = 999,
        tokenizer=None,
        max_response_length: int | None = None,
        demo_style: str = "path",
        search_order: str = "closest",
        max_demo_tokens: int | None = None,
    ):
        self.min_numbers, self.max_numbers = _text.check_range("num_numbers", num_numbers, 2, MAX_NUMBERS)
        self.max_number = _text.check_int("max_number", max_number, 1, 999)
        self.max_target = _text.check_int("max_target", max_target, 1, 99_999)
        self._dn, self._dt = _text.num_digits(self.max_number), _text.num_digits(self.max_target)
        n, dv = self.max_numbers, max(self._dn, self._dt)
        step = dv + 1 + dv + 1 + self._dt + 1  # "a*b=c,"
        answer = n * self._dn + (n - 1) + 2 * (n - 2)  # literals, operators, at most n-2 paren pairs
        self.default_max_response_length = (n - 1) * step + 1 + answer + 1
        self._set_demo_options(demo_style, search_order, max_demo_tokens, max_response_length)
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length)
        tok = self.tokenizer
        self._op_codes = np.zeros((tok.vocab_size,), np.int32)
        for code, c in enumerate(OPS, start=1):
            self._op_codes[tok.id_of(c)] = code
        self._sample_trees = jax.vmap(self._sample_tree, in_axes=(None, 0, 0, 0))
        _text.jit_task_hooks(self)

    def _set_demo_options(self, style, order, max_demo_tokens, max_response_length) -> None:
        if style not in DEMO_STYLES:
            raise ValueError(f"countdown demo_style must be one of {DEMO_STYLES}, got {style!r}")
        if order not in countdown_search.ORDERS:
            raise ValueError(f"countdown search_order must be one of {countdown_search.ORDERS}, got {order!r}")
        self.demo_style, self.search_order = style, order
        if style == "backward" and (self.min_numbers, self.max_numbers) != (3, 3):
            raise ValueError(
                "countdown demo_style='backward' needs num_numbers=3, got "
                f"({self.min_numbers}, {self.max_numbers}); use demo_style='search' for other counts"
            )
        if style != "path":
            self.response_alphabet = type(self).response_alphabet + countdown_search.SEARCH_ALPHABET
            self.default_max_response_length = (
                BACKWARD_RESPONSE_LENGTH if style == "backward" else SEARCH_RESPONSE_LENGTH[self.max_numbers]
            )
        limit = (max_response_length or self.default_max_response_length) - 1  # the demo and its EOS must fit
        if max_demo_tokens is None:
            max_demo_tokens = limit
        self.max_demo_tokens = _text.check_int("max_demo_tokens", max_demo_tokens, 2, limit)

    @property
    def max_prompt_length(self) -> int:
        return 1 + self.max_numbers * (self._dn + 1) - 1 + 1 + self._dt

    # -- sampling -----------------------------------------------------------------------------------
    def _sample_tree(self, count: Array, numbers: Array, pair_scores: Array, op_scores: Array):
        """Combines random pairs with random valid operations until one value is left (the target).

        ``numbers [K]``, ``pair_scores [K-1, K]``, ``op_scores [K-1, 4]``: uniform random ints.
        """
        k, cap = self.max_numbers, self.max_target
        numbers = jnp.where(jnp.arange(k) < count, numbers, 0)

        def combine(carry, scores):
            vals, alive = carry
            pair, ops = scores
            live = alive.sum() >= 2
            scores = jnp.where(alive, pair, -1)
            i = jnp.argmax(scores)
            j = jnp.argmax(scores.at[i].set(-2))
            a, b = jnp.maximum(vals[i], vals[j]), jnp.minimum(vals[i], vals[j])
            b1 = jnp.maximum(b, 1)
            results = jnp.stack([a + b, a - b, a * b, a // b1])
            valid = jnp.stack([a + b <= cap, a > b, a <= cap // b1, a % b1 == 0])
            op = jnp.argmax(jnp.where(valid, ops, -1))
            vals = jnp.where(live, vals.at[i].set(results[op]), vals)
            alive = jnp.where(live, alive.at[j].set(False), alive)
            return (vals, alive), None

        (vals, alive), _ = jax.lax.scan(combine, (numbers, jnp.arange(k) < count), (pair_scores, op_scores))
        return numbers, vals[jnp.argmax(alive)]

    def sample_problem(self, key: PRNGKey) -> Problem:
        k, t = self.max_numbers, _NUM_TRIES
        count, numbers, pair_scores, op_scores = _text.uniform_ints(
            key,
            [
                (self.min_numbers, k + 1, ()),
                (1, self.max_number + 1, (t, k)),
                (0, 2**20, (t, k - 1, k)),
                (0, 2**20, (t, k - 1, 4)),
            ],
        )
        numbers, targets = self._sample_trees(count, numbers, pair_scores, op_scores)
        # Prefer a target that is not one of the numbers and not 1 (else keep the last try).
        trivial = (targets <= 1) | jnp.any(numbers == targets[:, None], axis=1)
        pick = jnp.where(trivial.all(), t - 1, jnp.argmax(~trivial))
        return {"numbers": numbers[pick], "count": count, "target": targets[pick]}

    # -- prompt -------------------------------------------------------------------------------------
    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        tok = self.tokenizer
        ids, lengths = jax.vmap(lambda v: _text.render_int(v, self._dn, tok))(problem["numbers"])
        width = self.max_numbers * (self._dn + 1) - 1
        numbers = _text.join_spans(ids, lengths, problem["count"], _text.const_span(",", tok), width, tok.pad_id)
        spans = [numbers, _text.const_span(":", tok), _text.render_int(problem["target"], self._dt, tok)]
        return _text.pack(spans, self.max_prompt_length - 1, tok.pad_id)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return ",".join(map(str, problem_dict["numbers"])) + f":{problem_dict['target']}"

    # -- verification -------------------------------------------------------------------------------
    def evaluate(self, answer: Array, answer_length: Array, numbers: Array, count: Array):
        """Parses and evaluates the infix expression ``answer[:answer_length]`` (pure JAX).

        One ``lax.scan`` step per token. The parser keeps, per parenthesis level, a frame
        ``(sum, term, pending +/-, pending * or /)`` exactly as a recursive-descent parser would
        (``expr := term (+|- term)*``, ``term := factor (*|/ factor)*``), so it performs the same
        binary operations in the same order; frames of enclosing levels wait on a ``[S, 4]`` stack.
        Each literal consumes an equal, unused entry of ``numbers[:count]``.

        Returns ``(ok [] bool, value [] int32, all_used [] bool)``: ``ok`` is False on a syntax or
        literal error, an inexact division, division by zero, an intermediate beyond VALUE_BOUND, or a
        literal matching no unused number. Python twin: :func:`evaluate_text`.
        """
        return countdown_parser.evaluate(
            answer,
            answer_length,
            numbers,
            count,
            digits=_text.digit_values(self.tokenizer),
            ops=self._op_codes,
            max_digits=self._dn,
            bound=VALUE_BOUND,
            end_token=self.tokenizer.pad_id,
        )

    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        ok, value, all_used = self.evaluate(answer, answer_length, problem["numbers"], problem["count"])
        return ok & all_used & (value == problem["target"])

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        result = evaluate_text(answer, self._dn)
        if result is None:
            return False
        value, literals = result
        return sorted(literals) == sorted(problem_dict["numbers"]) and value == problem_dict["target"]

    # -- dicts and demonstrations -------------------------------------------------------------------
    def problem_to_dict(self, problem: Problem) -> dict:
        n = int(problem["count"])
        return {
            "numbers": as_problem_dict_value(np.asarray(problem["numbers"])[:n]),
            "target": as_problem_dict_value(problem["target"]),
        }

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        _text.check_keys("countdown", problem_dict, ("numbers", "target"))
        numbers = problem_dict["numbers"]
        if not isinstance(numbers, (list, tuple)) or not 2 <= len(numbers) <= self.max_numbers:
            raise ValueError(f"countdown 'numbers' must be a list of 2..{self.max_numbers} ints, got {numbers!r}")
        values = [_text.check_int("countdown number", v, 1, self.max_number) for v in numbers]
        target = _text.check_int("countdown 'target'", problem_dict["target"], 1, self.max_target)
        padded = np.zeros((self.max_numbers,), np.int32)
        padded[: len(values)] = values
        return {"numbers": jnp.asarray(padded), "count": jnp.int32(len(values)), "target": jnp.int32(target)}

    @property
    def has_step_checker(self) -> bool:
        return self.demo_style == "path"  # the checker reads "a op b = c," steps, not search or backward traces

    def steps_ok(self, problem_dict: dict, steps: list[str]) -> list[bool]:
        if not self.has_step_checker:
            raise ValueError(
                f"countdown's step checker reads demo_style='path' steps ('5*3=15,'), not {self.demo_style!r} traces"
            )
        return countdown_steps_ok(problem_dict, steps)

    def _solution(self, problem_dict: dict):
        """:func:`solve`'s ``(steps, expression)`` for a checked problem dict; ValueError if unsolvable."""
        self.problem_from_dict(problem_dict)
        found = solve(list(problem_dict["numbers"]), problem_dict["target"], self.max_target)
        if found is None:
            raise ValueError(
                f"countdown problem {problem_dict} has no solution with intermediates in [1, {self.max_target}]"
            )
        return found

    def demonstration(self, problem_dict: dict, style: str | None = None) -> str:
        """A worked solution in ``style`` (default: the task's ``demo_style``); ValueError if unsolvable.

        ``"path"``: steps ``"a*b=c,"`` of a solution, then ``<ans>`` and its expression. ``"search"``:
        the trace of a search for one (:func:`countdown_search.search_demonstration`). ``"backward"``
        (three numbers): the check of each last number in turn (:mod:`countdown_backward`).
        """
        style = self.demo_style if style is None else style
        if style not in DEMO_STYLES:
            raise ValueError(f"countdown demonstration style must be one of {DEMO_STYLES}, got {style!r}")
        steps, expression = found = self._solution(problem_dict)
        if style == "backward":
            return countdown_backward.backward_demonstration(
                problem_dict["numbers"],
                problem_dict["target"],
                max_value=self.max_target,
                max_tokens=self.max_demo_tokens,
                answer_marker=self.tokenizer.answer_marker,
            )
        if style == "search":
            return countdown_search.search_demonstration(
                problem_dict["numbers"],
                problem_dict["target"],
                max_value=self.max_target,
                order=self.search_order,
                max_tokens=self.max_demo_tokens,
                fallback=found,
                answer_marker=self.tokenizer.answer_marker,
            )
        reasoning = "".join(f"{a}{op}{b}={r}," for a, op, b, r in steps)
        return reasoning + self.tokenizer.answer_marker + expression

    def tool_demonstration(self, problem_dict: dict, tools=()) -> str:
        """The worked solution with every value written by the ``calc`` tool among `tools`: ``"path"`` steps
        as calls (``[5*3=15][15+7=22]<ans>5*3+7``), ``"backward"`` traces as
        :func:`countdown_backward.calc_backward_demonstration`; the plain demonstration without a calculator
        or for ``"search"`` traces."""
        calc = next((t for t in tools if t.name == "calc"), None)
        if calc is None or self.demo_style == "search":
            return self.demonstration(problem_dict)
        steps, expression = self._solution(problem_dict)
        marker = self.tokenizer.answer_marker
        if self.demo_style == "path":
            return "".join(f"{calc.open}{a}{op}{b}={r}{calc.close}" for a, op, b, r in steps) + marker + expression
        return countdown_backward.calc_backward_demonstration(
            problem_dict["numbers"],
            problem_dict["target"],
            max_tokens=self.max_demo_tokens,
            open=calc.open,
            close=calc.close,
            answer_marker=marker,
        )
