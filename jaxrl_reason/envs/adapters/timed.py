"""Host scorers under a time limit: a worker process that can be killed when a call runs too long.

A Python thread cannot be stopped, and a third-party scorer on model text can compute for minutes
(reasoning-gym's countdown hands ``9**9**9`` to sympy). :class:`TimedScorer` runs the calls in one
persistent child process: a batch of ``(problem, text)`` items goes down a pipe in one message and
each score comes back as soon as it is ready, so a call that returns in time costs one pipe round trip,
not a process start. When one item takes longer than ``timeout_s`` the worker is killed, that item
scores 0.0, ``timeouts`` grows by one (with a RuntimeWarning), and a fresh worker scores the rest.

The worker is forked (on POSIX) on first use and after each timeout, so the scorer needs no pickling,
but it runs in the child: state it changes there (a call counter, a cache) stays there, and it must
not call JAX (the forked child has none of the parent's JAX runtime threads).
"""

from __future__ import annotations

import multiprocessing
import threading
import traceback
import warnings
import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxrl_reason.types import HostScorer

#: A problem given by its index into the worker's problem list, or as a dict sent along.
Item = tuple[Any, str]


def _serve(conn, scorer: HostScorer, problems: Sequence[dict]) -> None:
    """Worker loop: for each batch, one ``(ok, score or exception)`` message per item."""
    while True:
        try:
            items = conn.recv()
        except (EOFError, OSError):
            return
        for problem, text in items:
            try:
                value = float(np.float32(scorer(problems[problem] if isinstance(problem, int) else problem, text)))
                conn.send((True, value))
            except Exception as e:  # handed to the parent, which raises it
                conn.send((False, _portable(e)))


def _portable(e: Exception) -> Exception:
    """`e` if it pickles, else a RuntimeError holding its traceback."""
    try:
        multiprocessing.reduction.ForkingPickler.dumps(e)
        return e
    except Exception:
        return RuntimeError(f"host scorer raised:\n{traceback.format_exc()}")


def _stop(process) -> None:
    if process.is_alive():
        process.kill()
    process.join(timeout=5)


class TimedScorer:
    """``scorer(problem, text)`` calls in a worker process, each under ``timeout_s`` seconds.

    Args:
      scorer: the host scorer; any callable (it is inherited by the forked worker, not pickled).
      problems: the problem dicts an ``int`` item refers to.
      timeout_s: the limit per call, > 0. A call past it scores 0.0 and counts in ``timeouts``.
      name: how warnings name this scorer.
    """

    def __init__(self, scorer: HostScorer, problems: Sequence[dict], *, timeout_s: float, name: str = "scorer"):
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds (or None for no limit), got {timeout_s!r}")
        self.scorer, self.problems, self.timeout_s, self.name = scorer, problems, float(timeout_s), name
        self.timeouts = 0
        self._lock = threading.Lock()
        self._process = self._conn = self._finalizer = None

    def __call__(self, items: Sequence[Item]) -> np.ndarray:
        """[len(items)] float32 scores; a call past the limit scores 0.0. Scorer exceptions are re-raised."""
        out = np.zeros((len(items),), np.float32)
        pending = list(range(len(items)))
        with self._lock:
            while pending:
                pending = self._run(items, pending, out)
        return out

    def _run(self, items: Sequence[Item], pending: list[int], out: np.ndarray) -> list[int]:
        """Sends `pending` to the worker and collects scores; returns the items left after a timeout."""
        conn = self._connection()
        conn.send([items[j] for j in pending])
        for n, j in enumerate(pending):
            if not conn.poll(self.timeout_s):
                self._timed_out()
                return pending[n + 1 :]
            try:
                ok, value = conn.recv()
            except (EOFError, OSError):
                code = self._process.exitcode
                self.close()
                raise RuntimeError(f"the {self.name} worker process died (exit code {code})") from None
            if not ok:
                self.close()  # it still holds the rest of the batch
                raise value
            out[j] = value
        return []

    def _timed_out(self) -> None:
        self.close()
        self.timeouts += 1
        warnings.warn(
            f"{self.name}: a call ran past timeout_s={self.timeout_s:g} and scored 0 "
            f"({self.timeouts} timeout(s) so far)",
            RuntimeWarning,
            stacklevel=3,
        )

    def _connection(self):
        if self._process is not None and self._process.is_alive():
            return self._conn
        self.close()
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
        parent, child = ctx.Pipe()
        process = ctx.Process(target=_serve, args=(child, self.scorer, self.problems), daemon=True)
        with warnings.catch_warnings():
            # JAX warns on every fork; the child only runs the scorer, never JAX.
            warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
            process.start()
        child.close()
        self._process, self._conn = process, parent
        self._finalizer = weakref.finalize(self, _stop, process)
        return parent

    def close(self) -> None:
        """Stops the worker (a later call starts a fresh one)."""
        if self._finalizer is not None:
            self._finalizer()
        if self._conn is not None:
            self._conn.close()
        self._process = self._conn = self._finalizer = None
