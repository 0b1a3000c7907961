"""The host bridge of a reasoning task's reward: the decoded response goes to a Python scorer.

:class:`HostReward` gives a :class:`~jaxrl_reason.envs.tasks.base.ReasoningTask` ``verify`` and ``_step``
that hand each finished episode's response, decoded with the env's tokenizer and cut before its first
EOS, to ``self._score(items)`` through :func:`jax.pure_callback` (works under ``jit`` and ``vmap``; the
scorer runs on the host, once per finished episode). A class using it supplies ``_score(items)`` (``items``
= ``[(problem, response_text), ...]`` -> ``[len(items)] float32``) and ``_host_problem(row)`` (one row of
the problem pytree, as numpy, -> what ``_score`` receives).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.types import Array, EnvState


class HostReward:
    """Mixin: ``verify`` and ``_step`` of a reasoning task through the host (see module docstring)."""

    def _host_problem(self, row) -> Any:
        raise NotImplementedError

    def _score(self, items: list[tuple[Any, str]]) -> np.ndarray:
        raise NotImplementedError

    def _score_rows(self, problem, window, n, active) -> np.ndarray:
        """Host side of the callback; any leading batch shape (``vmap_method="broadcast_all"``)."""
        n, active, window = (np.asarray(x) for x in (n, active, window))
        batch = active.shape
        rows_of = jax.tree.map(lambda x: np.asarray(x).reshape((-1,) + np.shape(x)[len(batch) :]), problem)
        out = np.zeros(active.size, np.float32)
        windows = window.reshape(-1, window.shape[-1])
        rows = np.flatnonzero(active.ravel())
        items = []
        for j in rows:
            text = self.tokenizer.decode(windows[j, : int(n.ravel()[j])]).split(self.tokenizer.eos, 1)[0]
            items.append((self._host_problem(jax.tree.map(lambda x, j=j: x[j], rows_of)), text))
        if items:
            out[rows] = self._score(items)
        return out.reshape(batch)

    def _host_reward(self, problem, tokens: Array, prompt_length: Array, length: Array, active: Array):
        # Only the response window ([max_response_length] tokens) travels to the host, not the prompt.
        size = self.max_response_length
        padded = jnp.concatenate([tokens, jnp.full((size,), self.tokenizer.pad_id, tokens.dtype)])
        window = jax.lax.dynamic_slice(padded, (prompt_length,), (size,))
        n = jnp.clip(length - prompt_length, 0, size)
        return jax.pure_callback(
            self._score_rows,
            jax.ShapeDtypeStruct((), jnp.float32),
            problem,
            window,
            n,
            active,
            vmap_method="broadcast_all",
        )

    def verify(self, problem, tokens: Array, prompt_length: Array, length: Array) -> Array:
        """[] float32: the scorer's reward of the response ``tokens[prompt_length:length]`` (cut at EOS).

        Calls back to the host (works under jit and vmap)."""
        return self._host_reward(problem, tokens, prompt_length, length, jnp.bool_(True))

    def _step(self, state: EnvState, action: Array) -> EnvState:
        # The callback runs every step (vmap turns a cond into a select, and the template steps
        # finished rows too) but scores only rows whose episode ends now: `state.done` is still the
        # flag from before this action.
        is_eos, full = self._ends(state, action)
        ends_now = (is_eos | full) & ~state.done
        reward = self._host_reward(state.problem, state.tokens, state.prompt_length, state.length, ends_now)
        return state.replace(rewards=reward[None], terminated=is_eos, truncated=full & ~is_eos)
