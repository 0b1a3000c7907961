"""Host tools: any Python function ``str -> str`` called from inside the jitted env step.

The call's tokens go to the host through ``jax.pure_callback`` (one callback per env step for the whole
batch); the function runs in a worker thread under a time limit. A function that raises, returns
something that is not text the tokenizer can write in ``max_answer_length`` tokens, or runs past
``timeout_s`` answers with the error token (``?``): the episode and the run go on, and the failure is
counted (``ToolUse.tool_stats``). A thread cannot be killed: a call that overran keeps its worker busy
until it returns, and later calls use a fresh worker.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tools.base import Tool
from jaxrl_reason.types import Array


class HostTool(Tool):
    """A Python function as a tool. ``fn(call_text) -> answer_text``; see the module docstring."""

    def __init__(
        self,
        name: str,
        fn: Callable[[str], str],
        *,
        open: str = "{",
        close: str = "}",
        max_answer_length: int = 16,
        timeout_s: float = 1.0,
    ):
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.name, self.fn, self.open, self.close = name, fn, open, close
        self.max_answer_length, self.timeout_s = int(max_answer_length), float(timeout_s)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)

    def answer_text(self, call_text: str) -> str | None:
        """``fn(call_text)`` under the time limit, or None when it raised, overran or returned no text."""
        future = self._pool.submit(self.fn, call_text)
        try:
            out = future.result(timeout=self.timeout_s)
        except concurrent.futures.TimeoutError:
            self._pool.shutdown(wait=False)
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
            return None
        except Exception:
            return None
        return out if isinstance(out, str) else None

    def _host(self, tokenizer, calls, lengths, active):
        calls, lengths, active = np.asarray(calls), np.asarray(lengths), np.asarray(active)
        shape = calls.shape[:-1]
        answers = np.full((*shape, self.max_answer_length), tokenizer.pad_id, np.int32)
        n = np.zeros(shape, np.int32)
        ok = np.zeros(shape, bool)
        for i in np.ndindex(*shape):
            if active[i]:
                ids = self._encode(tokenizer, self.answer_text(tokenizer.decode(calls[i][: lengths[i]])))
                if ids is not None:
                    answers[i][: len(ids)], n[i], ok[i] = ids, len(ids), True
        return answers, n, ok

    def _encode(self, tokenizer, text: str | None) -> list[int] | None:
        if text is None:
            return None
        try:
            ids = tokenizer.encode(text)
        except ValueError:
            return None
        return ids if 0 < len(ids) <= self.max_answer_length else None

    def run(self, tokenizer, call: Array, call_length: Array, active: Array):
        out = (
            jax.ShapeDtypeStruct((self.max_answer_length,), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.int32),
            jax.ShapeDtypeStruct((), jnp.bool_),
        )
        host = lambda c, n, a: self._host(tokenizer, c, n, a)  # noqa: E731
        return jax.pure_callback(host, out, call, call_length, active, vmap_method="broadcast_all")
