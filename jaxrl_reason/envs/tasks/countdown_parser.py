"""The JAX twin of :func:`countdown.evaluate_text`: a pure-JAX infix-expression parser for countdown answers.

Grammar and rules are those of :mod:`countdown` (``expr := term (+|- term)*``, ``term := factor (*|/
factor)*``, ``factor := literal | ( expr )``; left-associative; exact division; ``|v| <= bound`` for every
intermediate; canonical literals of at most ``max_digits`` digits, each consuming an equal, unused number).

:func:`evaluate` runs one ``lax.scan`` step per token (:func:`step`) and one more for the end of the answer.
The state keeps, per parenthesis level, a frame ``(total, term, addop, mulop)`` exactly as a recursive-descent
parser would, so it performs the same binary operations in the same order as the Python reference; frames of
enclosing levels wait on a ``[S, 4]`` stack. Everything here is written for one answer (vmap to batch) and
nothing is jitted inside.

Operator codes (the ``ops`` table maps each token id to one): ``1..4 = + - * /``, ``5 = (``, ``6 = )``,
``0`` any other token; :data:`END` marks the position just past the answer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrl_reason.types import Array

ADD, SUB, MUL, DIV, LPAREN, RPAREN, END = 1, 2, 3, 4, 5, 6, 7

#: A frame of one parenthesis level: ``(total, term, addop, mulop)``, each [] int32.
Frame = tuple[Array, Array, Array, Array]


class Context(NamedTuple):
    """What every scan step reads (static tables and the answer's fixed inputs)."""

    digits: Array  # [V] int32: the digit each token id stands for, -1 for a non-digit
    ops: Array  # [V] int32: the operator code of each token id (module docstring), 0 for any other token
    numbers: Array  # [K] int32: the given numbers (0-padded)
    live: Array  # [K] bool: numbers[:count]
    length: Array  # [] int32: answer length; the step at this position reads END
    max_digits: int  # longest allowed literal
    bound: int  # |intermediate| above this is an error


class _Parse(NamedTuple):
    total: Array  # the current parenthesis level's frame: sum so far,
    term: Array  # product/quotient so far,
    addop: Array  # pending + (1) or - (2), 0 before the first one,
    mulop: Array  # pending * (3) or / (4), 0 when the next factor starts a new term
    stack: Array  # [S, 4] int32 frames of the enclosing levels
    depth: Array
    used: Array  # [K] bool: numbers consumed by literals
    expect: Array  # an operand (number or "(") must come next
    in_num: Array
    num: Array
    num_len: Array
    lead0: Array
    err: Array
    value: Array  # the result, set at the end


def binop(code: Array, a: Array, b: Array, bound: int) -> tuple[Array, Array]:
    """``a (code) b`` for codes 1..4 = ``+ - * /``: ``(result, bad)``, all [] int32 / bool.

    ``bad``: an inexact division, division by zero, or ``|result| > bound``. Overflow-free for
    ``|a|, |b| <= bound``: the product's bound is checked before multiplying (a refused product reads 0).
    """
    mul_ok = (b == 0) | (jnp.abs(a) <= bound // jnp.maximum(jnp.abs(b), 1))
    b_safe = jnp.where(b == 0, 1, b)
    q = a // b_safe
    div_ok = (b != 0) & (q * b_safe == a)
    r = jnp.select([code == ADD, code == SUB, code == MUL], [a + b, a - b, jnp.where(mul_ok, a * b, 0)], q)
    bad = ((code == MUL) & ~mul_ok) | ((code == DIV) & ~div_ok) | (jnp.abs(r) > bound)
    return r, bad


def feed(frame: Frame, v: Array, bound: int) -> tuple[Frame, Array]:
    """A factor's value ``v`` arrives: it starts a term, or the pending ``*``/``/`` applies. ``(frame, bad)``."""
    total, term, addop, mulop = frame
    r, bad = binop(mulop, term, v, bound)
    return (total, jnp.where(mulop == 0, v, r), addop, jnp.int32(0)), (mulop != 0) & bad


def combine(frame: Frame, bound: int) -> tuple[Array, Array]:
    """The level's value so far, ``total (addop) term``: ``(value, bad)``."""
    total, term, addop, _ = frame
    r, bad = binop(addop, total, term, bound)
    return jnp.where(addop == 0, term, r), (addop != 0) & bad


def _select(pred: Array, a: Frame, b: Frame) -> Frame:
    """Frame ``a`` where ``pred``, else ``b`` (element-wise)."""
    return tuple(jnp.where(pred, x, y) for x, y in zip(a, b, strict=True))


def init_state(stack_size: int, num_numbers: int) -> _Parse:
    """The state before the first token: an empty level, an operand expected, no number used."""
    zero = jnp.int32(0)
    return _Parse(
        total=zero,
        term=zero,
        addop=zero,
        mulop=zero,
        stack=jnp.zeros((stack_size, 4), jnp.int32),
        depth=zero,
        used=jnp.zeros((num_numbers,), bool),
        expect=jnp.bool_(True),
        in_num=jnp.bool_(False),
        num=zero,
        num_len=zero,
        lead0=jnp.bool_(False),
        err=jnp.bool_(False),
        value=zero,
    )


def _read(ctx: Context, i: Array, t: Array) -> tuple[Array, Array]:
    """Token ``t`` at position ``i`` as ``(digit or -1, operator code)``; position ``ctx.length`` reads END."""
    at_end = i == ctx.length
    t_safe = jnp.clip(t, 0, ctx.ops.shape[0] - 1)
    d = jnp.where(at_end, -1, ctx.digits[t_safe])
    code = jnp.where(at_end, END, ctx.ops[t_safe])
    return d, code


def _digit(ctx: Context, st: _Parse, d: Array) -> _Parse:
    """A digit continues or starts a literal (a digit right after ``)`` is an error, so are leading zeros)."""
    cont = st.in_num
    digit_err = jnp.where(cont, st.lead0 | (st.num_len >= ctx.max_digits), ~st.expect)
    return st._replace(
        in_num=jnp.bool_(True),
        num=jnp.where(cont, st.num * 10 + d, d),
        num_len=jnp.where(cont, st.num_len + 1, 1),
        lead0=jnp.where(cont, st.lead0, d == 0),
        err=st.err | digit_err,
    )


def _close_literal(ctx: Context, st: _Parse, is_digit: Array) -> tuple[Frame, Array, Array, Array]:
    """A non-digit first closes a pending literal: a factor that must match an unused number.

    Returns ``(frame, used, err, expect)`` after it (unchanged when no literal is pending).
    """
    frame = (st.total, st.term, st.addop, st.mulop)
    flush = ~is_digit & st.in_num
    fed, e_feed = feed(frame, st.num, ctx.bound)
    frame = _select(flush, fed, frame)
    match = (ctx.numbers == st.num) & ~st.used & ctx.live
    used = st.used | (flush & (jnp.arange(ctx.numbers.shape[0]) == jnp.argmax(match)) & match.any())
    err = st.err | (flush & (e_feed | ~match.any()))
    return frame, used, err, st.expect & ~flush


def _operator(ctx: Context, st: _Parse, code: Array, active: Array, is_digit: Array) -> _Parse:
    """The state after a non-digit token (an operator, a parenthesis, END or a bad token)."""
    frame, used, err, expect = _close_literal(ctx, st, is_digit)
    is_add, is_mul = (code == ADD) | (code == SUB), (code == MUL) | (code == DIV)
    is_lp, is_rp, is_end = code == LPAREN, code == RPAREN, code == END
    value, e_comb = combine(frame, ctx.bound)
    # "(": save this level's frame, start a fresh one. The stack's only write is already conditioned.
    s = st.stack.shape[0]
    depth = jnp.clip(st.depth, 0, s - 1)
    stack = st.stack.at[depth].set(jnp.where(active & ~is_digit & is_lp, jnp.stack(frame), st.stack[depth]))
    # ")": close the level and feed its value to the enclosing frame.
    parent = tuple(st.stack[jnp.clip(st.depth - 1, 0, s - 1)])
    closed, e_close = feed(parent, value, ctx.bound)

    zero = jnp.int32(0)
    new = frame
    new = _select(is_add, (value, frame[1], code, frame[3]), new)
    new = _select(is_mul, (frame[0], frame[1], frame[2], code), new)
    new = _select(is_lp, (zero, zero, zero, zero), new)
    new = _select(is_rp, closed, new)
    err = err | (is_add & (expect | e_comb)) | (is_mul & expect) | (is_lp & ~expect)
    err = err | (is_rp & (expect | (st.depth == 0) | e_comb | e_close))
    err = err | (is_end & (expect | (st.depth != 0) | e_comb))
    err = err | (code == 0)  # any other character
    return st._replace(
        total=new[0],
        term=new[1],
        addop=new[2],
        mulop=new[3],
        stack=stack,
        depth=st.depth + is_lp.astype(jnp.int32) - is_rp.astype(jnp.int32),
        used=used,
        expect=jnp.where(is_rp, False, expect | is_add | is_mul | is_lp),
        in_num=jnp.bool_(False),
        err=err,
        value=jnp.where(is_end, value, st.value),
    )


def step(ctx: Context, st: _Parse, x: tuple[Array, Array]) -> tuple[_Parse, None]:
    """The scan body: reads token ``t`` at position ``i`` (``x = (i, t)``); positions past the end change nothing."""
    i, t = x
    active = i <= ctx.length
    d, code = _read(ctx, i, t)
    is_digit = d >= 0
    nondigit = _operator(ctx, st, code, active, is_digit)
    nxt = jax.tree.map(lambda a, b: jnp.where(is_digit, a, b), _digit(ctx, st, d), nondigit)
    nxt = jax.tree.map(lambda a, b: jnp.where(active, a, b), nxt, st)
    # The stack's only write is already conditioned: no O(S) select per token.
    return nxt._replace(stack=nondigit.stack), None


def evaluate(
    answer: Array,
    answer_length: Array,
    numbers: Array,
    count: Array,
    *,
    digits: Array,
    ops: Array,
    max_digits: int,
    bound: int,
    end_token: int,
) -> tuple[Array, Array, Array]:
    """Parses and evaluates ``answer[:answer_length]`` (``answer [T]`` token ids) against ``numbers[:count]``.

    ``digits``/``ops``: the ``[V]`` token tables of :class:`Context`; ``end_token`` pads the scan's last
    step (any id: that step reads END). Returns ``(ok [] bool, value [] int32, all_used [] bool)``
    (see ``Countdown.evaluate``).
    """
    size, k = answer.shape[0], numbers.shape[0]
    live = jnp.arange(k) < count
    ctx = Context(jnp.asarray(digits), jnp.asarray(ops), numbers, live, answer_length, max_digits, bound)
    tokens = jnp.concatenate([answer.astype(jnp.int32), jnp.asarray([end_token], jnp.int32)])
    st, _ = jax.lax.scan(functools.partial(step, ctx), init_state(size + 1, k), (jnp.arange(size + 1), tokens))
    return ~st.err, st.value, jnp.all(st.used | ~live)
