"""Shared text helpers of the built-in tasks: JAX functions over token arrays, each with a Python twin.

A *span* is a pair ``(ids [w] int32, n [] int32)``: ``ids[:n]`` are the tokens, the rest is padding.
Digit tokens are looked up through the tokenizer (never assumed consecutive), so every helper works
with any :class:`~jaxrl_reason.envs.tokenizer.Tokenizer` whose alphabet holds the digits.

=====================================  =========================================
JAX (pure, unbatched)                  Python twin
=====================================  =========================================
``render_int(v, width, tok)``          ``str(v)``
``const_span(text, tok)``              ``text``
``pack(spans, size, pad_id)``          ``"".join(parts)``
``join_spans(spans, count, sep, ..)``  ``sep.join(parts[:count])``
``span_equal(a, na, b, nb)``           ``a == b``
``parse_decimal(ids, n, max_digits)``  ``parse_decimal_text(text, max_digits)``
=====================================  =========================================
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tokenizer import Tokenizer
from jaxrl_reason.types import Array

DIGITS = "0123456789"


def num_digits(value: int) -> int:
    """Decimal width of a non-negative Python int (``num_digits(0) == 1``)."""
    return len(str(int(value)))


def digit_ids(tok: Tokenizer) -> np.ndarray:
    """[10] int32: token id of each digit."""
    return tok.ids_of(DIGITS)


def digit_values(tok: Tokenizer) -> np.ndarray:
    """[vocab_size] int32: the digit a token stands for, or -1 for non-digit tokens."""
    table = np.full((tok.vocab_size,), -1, np.int32)
    table[digit_ids(tok)] = np.arange(10, dtype=np.int32)
    return table


def const_span(text: str, tok: Tokenizer) -> tuple[Array, Array]:
    """A fixed text as a span (``ids [len(text)]``, ``n = len``)."""
    ids = np.asarray(tok.encode(text), np.int32).reshape(-1)
    return jnp.asarray(ids), jnp.int32(ids.shape[0])


def render_int(value: Array, width: int, tok: Tokenizer) -> tuple[Array, Array]:
    """Canonical decimal of a non-negative int32 ``value`` as a left-aligned span of ``[width]`` ids.

    Python twin: ``str(value)``. ``value`` must be in ``[0, 10**width)`` (callers size ``width``).
    """
    value = jnp.asarray(value, jnp.int32)
    powers = jnp.asarray([10**k for k in range(width - 1, -1, -1)], jnp.int32)  # most significant first
    digits = (value // powers) % 10  # [width], right-aligned with leading zeros
    n = jnp.maximum(1, jnp.sum(jnp.cumsum(digits) > 0)).astype(jnp.int32)
    idx = jnp.arange(width)
    shifted = digits[jnp.clip(idx + width - n, 0, width - 1)]
    ids = jnp.asarray(digit_ids(tok))[shifted]
    return jnp.where(idx < n, ids, tok.pad_id).astype(jnp.int32), n


def pack(spans, size: int, pad_id: int) -> tuple[Array, Array]:
    """Concatenates spans into one left-aligned span of ``[size]`` ids (Python twin: ``"".join``).

    ``size`` must be at least the sum of the spans' widths.
    """
    ids = jnp.concatenate([jnp.asarray(s[0], jnp.int32).reshape(-1) for s in spans])
    valid = jnp.concatenate([jnp.arange(jnp.shape(s[0])[-1]) < s[1] for s in spans])
    dest = jnp.where(valid, jnp.cumsum(valid) - 1, size)
    out = jnp.full((size,), pad_id, jnp.int32).at[dest].set(ids, mode="drop")
    return out, valid.sum().astype(jnp.int32)


def join_spans(ids: Array, lengths: Array, count: Array, sep: tuple[Array, Array], size: int, pad_id: int):
    """``sep.join`` of the first ``count`` rows of a batch of spans ``ids [K, w]``, ``lengths [K]``.

    Returns a span of ``[size]`` ids. Python twin: ``sep.join(parts[:count])``.
    """
    k = ids.shape[0]
    sep_ids, sep_n = sep
    spans = []
    for i in range(k):
        live = i < count
        spans.append((ids[i], jnp.where(live, lengths[i], 0)))
        if i < k - 1:
            spans.append((sep_ids, jnp.where(i + 1 < count, sep_n, 0)))
    return pack(spans, size, pad_id)


def span_equal(a: Array, na: Array, b: Array, nb: Array) -> Array:
    """[] bool: ``a[:na] == b[:nb]`` as token sequences (any widths)."""
    w = max(a.shape[0], b.shape[0])
    a = jnp.pad(a, (0, w - a.shape[0]), constant_values=-1)
    b = jnp.pad(b, (0, w - b.shape[0]), constant_values=-1)
    idx = jnp.arange(w)
    return (na == nb) & jnp.all((a == b) | (idx >= na))


def parse_decimal(ids: Array, n: Array, max_digits: int, tok: Tokenizer) -> tuple[Array, Array]:
    """Parses ``ids[:n]`` as one canonical non-negative decimal literal.

    Returns ``(value [] int32, ok [] bool)``; ``ok`` is False for an empty span, a non-digit token,
    a leading zero (``"07"``; ``"0"`` is fine) or more than ``max_digits`` digits (``max_digits <= 9``,
    so the value never overflows int32). Python twin: :func:`parse_decimal_text`.
    """
    if not 1 <= max_digits <= 9:
        raise ValueError(f"max_digits must be in [1, 9] so int32 cannot overflow, got {max_digits}")
    width = ids.shape[0]
    idx = jnp.arange(width)
    live = idx < n
    d = jnp.asarray(digit_values(tok))[jnp.clip(ids, 0, tok.vocab_size - 1)]
    d = jnp.where((ids >= 0) & (ids < tok.vocab_size), d, -1)
    all_digits = jnp.all((d >= 0) | ~live)
    ok = (n >= 1) & (n <= max_digits) & all_digits & ((d[0] != 0) | (n == 1))

    # Vectorized (no loop: cheap to trace eagerly): digit i weighs 10**(n-1-i); at most 9 digits count.
    used = idx < jnp.minimum(n, max_digits)
    powers = jnp.asarray([10**k for k in range(10)], jnp.int32)[jnp.clip(n - 1 - idx, 0, 9)]
    value = jnp.sum(jnp.where(used, jnp.maximum(d, 0) * powers, 0))
    return jnp.where(ok, value, 0).astype(jnp.int32), ok


def parse_decimal_text(text: str, max_digits: int) -> int | None:
    """Python twin of :func:`parse_decimal`: the value of a canonical decimal literal, else None."""
    if not 1 <= len(text) <= max_digits or any(c not in DIGITS for c in text):
        return None
    if text[0] == "0" and len(text) > 1:
        return None
    return int(text)


def check_int(name: str, value, lo: int, hi: int) -> int:
    """``value`` as an int in ``[lo, hi]``, else a ValueError naming ``name`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an int in [{lo}, {hi}], got {value!r} ({type(value).__name__})")
    if not lo <= int(value) <= hi:
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {value}")
    return int(value)


def check_range(name: str, value, lo: int, hi: int) -> tuple[int, int]:
    """A difficulty kwarg given as an int or a ``(min, max)`` pair, checked to lie in ``[lo, hi]``."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a (min, max) pair, got {value!r}")
        a, b = (check_int(name, v, lo, hi) for v in value)
        if a > b:
            raise ValueError(f"{name} must be a (min, max) pair with min <= max, got {value!r}")
        return a, b
    v = check_int(name, value, lo, hi)
    return v, v


def check_keys(name: str, problem_dict, keys: tuple[str, ...]) -> None:
    """Raises ValueError unless ``problem_dict`` is a dict with exactly ``keys``."""
    if not isinstance(problem_dict, dict) or set(problem_dict) != set(keys):
        got = sorted(problem_dict) if isinstance(problem_dict, dict) else type(problem_dict).__name__
        raise ValueError(f"{name} problem must be a dict with keys {sorted(keys)}, got {got}")


def uniform_ints(key, ranges: list[tuple[int, int, tuple[int, ...]]]) -> list[Array]:
    """Independent uniform int32 draws, one per ``(low, high_exclusive, shape)``, from ONE randint call.

    (Every ``jax.random`` call adds its own threefry kernel, and compiling those dominated the samplers'
    jit time on CPU; one call with per-element bounds keeps it small.)
    """
    sizes = [int(np.prod(shape, dtype=np.int64)) for _, _, shape in ranges]
    lo = np.concatenate([np.full((n,), a, np.int32) for (a, _, _), n in zip(ranges, sizes, strict=True)])
    hi = np.concatenate([np.full((n,), b, np.int32) for (_, b, _), n in zip(ranges, sizes, strict=True)])
    flat = jax.random.randint(key, lo.shape, jnp.asarray(lo), jnp.asarray(hi), jnp.int32)
    out, start = [], 0
    for (_, _, shape), n in zip(ranges, sizes, strict=True):
        out.append(flat[start : start + n].reshape(shape))
        start += n
    return out


def jit_task_hooks(task) -> None:
    """Replaces a task's pure JAX hooks on the instance by jitted versions of themselves.

    Under an outer ``jit`` they are inlined (no cost); in eager calls (``env.init(key)``, stepping a
    demonstration token by token, ``api_test``) each hook compiles once per env instead of dispatching,
    and compiling, dozens of small ops one by one (``api_test``: 172 -> 71 XLA compiles for countdown).
    """
    for name in ("sample_problem", "_render_prompt", "_check_answer"):
        setattr(task, name, jax.jit(getattr(task, name)))
