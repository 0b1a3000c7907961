"""``calc``: a pure-JAX calculator for one binary operation on non-negative integers.

A call is ``a op b`` with ``a, b`` canonical decimals (no sign, no leading zero) of at most 9 digits and
``op`` one of ``+ - * /`` (in countdown's exact arithmetic, ``countdown_parser.binop``); the answer is the exact
integer result in canonical decimal (``-`` for a
negative difference). Division must be exact; a result outside int32, a division by zero, an inexact
division or any other text is an error (``?``). Called as ``[47*8=`` and answered ``376]``.
Python twin: :func:`calculate_text` (tested equal on fuzzed calls).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_reason.envs.tasks import _text, countdown_parser
from jaxrl_reason.envs.tools.base import Tool
from jaxrl_reason.types import Array

OPS = "+-*/"
MAX_OPERAND_DIGITS = 9
INT32_MAX = 2**31 - 1


def calculate_text(call: str) -> str | None:
    """Python twin of the calculator: the answer text of `call`, or None for an error."""
    i = next((i for i, c in enumerate(call) if c in OPS), None)
    if i is None:
        return None
    a = _text.parse_decimal_text(call[:i], MAX_OPERAND_DIGITS)
    b = _text.parse_decimal_text(call[i + 1 :], MAX_OPERAND_DIGITS)
    if a is None or b is None:
        return None
    op = call[i]
    if op == "/":
        if b == 0 or a % b:
            return None
        value = a // b
    else:
        value = a + b if op == "+" else a - b if op == "-" else a * b
    return str(value) if abs(value) <= INT32_MAX else None


class Calculator(Tool):
    """The calculator tool (see module docstring); ``open``/``close`` are ``[``/``]`` by default."""

    name = "calc"

    def __init__(self, *, open: str = "[", close: str = "]", max_call_length: int = 2 * MAX_OPERAND_DIGITS + 1):
        self.open, self.close = open, close
        self.max_call_length = max_call_length
        self.max_answer_length = 11  # sign and 10 digits

    def run(self, tokenizer, call: Array, call_length: Array, active: Array):
        del active  # cheap enough to run on every step
        ops = jnp.asarray(tokenizer.ids_of(OPS))
        idx = jnp.arange(call.shape[0])
        is_op = (call[:, None] == ops[None, :]).any(-1) & (idx < call_length)
        at = jnp.argmax(is_op)  # the first operator
        code = jnp.argmax(call[at] == ops)
        a, ok_a = _text.parse_decimal(call, at, MAX_OPERAND_DIGITS, tokenizer)
        right = jnp.where(idx + at + 1 < call.shape[0], call[jnp.clip(idx + at + 1, 0, call.shape[0] - 1)], -1)
        b, ok_b = _text.parse_decimal(right, call_length - at - 1, MAX_OPERAND_DIGITS, tokenizer)
        value, bad = countdown_parser.binop(code + 1, a, b, INT32_MAX)  # countdown's exact arithmetic
        ok = is_op.any() & ok_a & ok_b & ~bad
        return (*_render_signed(jnp.where(ok, value, 0), self.max_answer_length, tokenizer), ok)


def _render_signed(value: Array, width: int, tokenizer) -> tuple[Array, Array]:
    """Canonical decimal of an int32 (``-`` first when negative) as a ``[width]`` span."""
    neg = value < 0
    digits, n = _text.render_int(jnp.abs(value), width - 1, tokenizer)
    minus = jnp.asarray(tokenizer.ids_of("-"))
    return _text.pack([(minus, neg.astype(jnp.int32)), (digits, n)], width, tokenizer.pad_id)
