"""Tool calls inside the token MDP: the model asks, the environment answers.

:class:`ToolUse` wraps a reasoning task with tools. The model writes a tool's ``open`` character, the
call and ``=``; from then on the environment writes the tool's answer and the tool's ``close`` character,
one token per step: at each of those steps the legal-action mask is that single token, so every sampler,
decoder and search produces it without a choice (the KV cache grows with it like with any token), and
the state records it as written by the environment (``written_mask``). Losses skip those tokens. The
reward, prompts, answers and problems are the task's own; only its demonstrations change (a task can
offer ``tool_demonstration``, the worked solution that calls the tools).

Example (calculator, ``[``/``]``): the model writes ``[47*8=``, the env writes ``376]``, the model goes on.
A call that fails (bad text, an error of the tool, a host tool that raised or ran too long) is answered
``?]``; a call longer than ``max_call_length`` tokens fails. Calls do not nest: an ``open`` inside a call
is part of its text.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_reason.envs.tasks.base import ReasoningTask
from jaxrl_reason.envs.tokenizer import DEFAULT_ALPHABET, Tokenizer
from jaxrl_reason.envs.tools.base import CALL_END, ERROR_ANSWER, make_tools
from jaxrl_reason.types import Array, EnvState, Problem


@struct.dataclass
class ToolState:
    """The env-private part of a tool-use episode (``EnvState.aux``)."""

    call_start: Array  # [] int32: position of the open call's first text token, -1 when no call is open
    tool: Array  # [] int32: index of the open call's tool
    pending: Array  # [K] int32: the tokens the env is writing (answer + close)
    pending_length: Array  # [] int32
    pending_pos: Array  # [] int32: next pending token to write (== pending_length: the policy's turn)
    written: Array  # [L] bool: tokens written by the env
    calls: Array  # [] int32: calls answered so far
    errors: Array  # [] int32: calls answered with the error token


class ToolUse(ReasoningTask):
    """`task` with `tools` (names registered with ``register_tool`` or :class:`Tool` objects).

    The task's tokenizer must hold every tool's ``open``/``close`` characters, ``=`` and ``?``
    (``jr.make(env_id, tools=(...))`` builds it so).
    """

    def __init__(self, task: ReasoningTask, tools, *, max_call_length: int = 24):
        if not isinstance(task, ReasoningTask):
            raise ValueError(f"tools work with one-player reasoning tasks, got {type(task).__name__}")
        self.task = task
        self.tools = make_tools(tools)
        if not self.tools:
            raise ValueError("ToolUse needs at least one tool")
        self.max_call_length = int(max_call_length)
        self.env_id = task.env_id
        self.reward_needs_answer = task.reward_needs_answer
        extra = "".join(t.open for t in self.tools) + CALL_END  # a call's text uses the task's own characters
        self.response_alphabet = "".join(dict.fromkeys(task.response_alphabet + extra))
        super().__init__(tokenizer=task.tokenizer, max_response_length=task.max_response_length)
        self._check_tokens()

    def _check_tokens(self) -> None:
        opens = [t.open for t in self.tools]
        if len(set(opens)) != len(opens):
            raise ValueError(f"tools must open with distinct characters, got {opens}")
        for t in self.tools:
            for ch in (t.open, t.close, CALL_END, ERROR_ANSWER):
                if ch not in self.tokenizer.alphabet:
                    raise ValueError(
                        f"tool {t.name!r} needs the character {ch!r}, which the tokenizer's alphabet "
                        f"{self.tokenizer.alphabet!r} lacks (build the env with jr.make(env_id, tools=...))"
                    )

    # -- the task's own parts --------------------------------------------------------------------------
    @property
    def max_prompt_length(self) -> int:
        return self.task.max_prompt_length

    def sample_problem(self, key):
        return self.task.sample_problem(key)

    def _render_prompt(self, problem):
        return self.task._render_prompt(problem)

    def _prompt_text_reference(self, problem_dict):
        return self.task._prompt_text_reference(problem_dict)

    def _check_answer(self, problem, answer, answer_length):
        return self.task._check_answer(problem, answer, answer_length)

    def _check_answer_text(self, problem_dict, answer):
        return self.task._check_answer_text(problem_dict, answer)

    def problem_to_dict(self, problem):
        return self.task.problem_to_dict(problem)

    def problem_from_dict(self, problem_dict):
        return self.task.problem_from_dict(problem_dict)

    def demonstration(self, problem_dict: dict) -> str:
        """The task's ``tool_demonstration(problem_dict, tools)`` (a solution that calls the tools it knows
        among these), else its plain one."""
        demo = getattr(self.task, "tool_demonstration", None)
        return demo(problem_dict, self.tools) if demo is not None else self.task.demonstration(problem_dict)

    # -- tokens written by the env ---------------------------------------------------------------------
    def written_mask(self, state: EnvState) -> Array:
        return state.aux.written

    @property
    def writes_tokens(self) -> bool:
        return True

    def tool_stats(self, states: EnvState) -> dict[str, Array]:
        """Calls answered and failed calls, summed over a (batched) state."""
        return {"tool_calls": states.aux.calls.sum(), "tool_errors": states.aux.errors.sum()}

    @functools.cached_property
    def _tables(self) -> tuple[np.ndarray, np.ndarray]:
        """``tool_of [V]`` (the tool a token opens, -1 for none) and ``close_ids [tools]``."""
        tok = self.tokenizer
        tool_of = np.full((tok.vocab_size,), -1, np.int32)
        for i, t in enumerate(self.tools):
            tool_of[tok.id_of(t.open)] = i
        return tool_of, tok.ids_of([t.close for t in self.tools])

    @property
    def _pending_size(self) -> int:
        return max(t.max_answer_length for t in self.tools) + 1

    def _init(self, problem: Problem) -> EnvState:
        state = super()._init(problem)
        k = self._pending_size
        aux = ToolState(
            call_start=jnp.int32(-1),
            tool=jnp.int32(0),
            pending=jnp.zeros((k,), jnp.int32),
            pending_length=jnp.int32(0),
            pending_pos=jnp.int32(0),
            written=jnp.zeros((self.spec.max_length,), bool),
            calls=jnp.int32(0),
            errors=jnp.int32(0),
        )
        return state.replace(aux=aux)

    def _call_text(self, tokens: Array, start: Array) -> Array:
        padded = jnp.concatenate([tokens, jnp.full((self.max_call_length,), self.spec.pad_id, tokens.dtype)])
        return jax.lax.dynamic_slice(padded, (jnp.maximum(start, 0),), (self.max_call_length,))

    def _answer(self, t: ToolState, tokens: Array, end: Array, active: Array) -> tuple[Array, Array, Array]:
        """The env's reply to the call ending at position `end`: ``(tokens [K], length, ok)``."""
        call = self._call_text(tokens, t.call_start)
        n = end - t.call_start
        fits = n <= self.max_call_length
        n_in = jnp.minimum(n, self.max_call_length)
        outs = [tool.run(self.tokenizer, call, n_in, active & fits) for tool in self.tools]
        k = self._pending_size
        answers = jnp.stack([jnp.pad(a, (0, k - a.shape[0])) for a, _, _ in outs])[t.tool]
        length = jnp.stack([m for _, m, _ in outs])[t.tool]
        ok = jnp.stack([o for _, _, o in outs])[t.tool] & fits
        error = jnp.zeros((k,), jnp.int32).at[0].set(self.tokenizer.id_of(ERROR_ANSWER))
        answers, length = jnp.where(ok, answers, error), jnp.where(ok, length, 1)
        close = jnp.asarray(self._tables[1])[t.tool]
        return answers.at[jnp.minimum(length, k - 1)].set(close), length + 1, ok

    def _step(self, state: EnvState, action: Array) -> EnvState:
        t, pos = state.aux, state.length - 1  # the action sits at `pos`
        tool_of = jnp.asarray(self._tables[0])
        writing = t.pending_pos < t.pending_length
        opened = ~writing & (t.call_start < 0) & (tool_of[action] >= 0)
        closing = ~writing & (t.call_start >= 0) & (action == self.tokenizer.id_of(CALL_END))
        answer, length, ok = self._answer(t, state.tokens, pos, closing)
        t = t.replace(
            written=t.written.at[pos].set(writing),
            call_start=jnp.where(opened, pos + 1, jnp.where(closing, -1, t.call_start)),
            tool=jnp.where(opened, tool_of[action], t.tool),
            pending=jnp.where(closing, answer, t.pending),
            pending_length=jnp.where(closing, length, t.pending_length),
            pending_pos=jnp.where(closing, 0, t.pending_pos + writing),
            calls=t.calls + closing,
            errors=t.errors + (closing & ~ok),
        )
        nxt = super()._step(state, action).replace(aux=t)
        forced = t.pending_pos < t.pending_length
        only = jax.nn.one_hot(t.pending[jnp.minimum(t.pending_pos, self._pending_size - 1)], self.spec.num_actions) > 0
        return nxt.replace(legal_action_mask=jnp.where(forced, only, jnp.asarray(self._legal_mask)))


def with_tools(env_id: str, tools, **overrides) -> ToolUse:
    """``make(env_id, **overrides)`` with `tools`: its tokenizer (unless given) is the default alphabet plus
    the tools' characters; what ``jr.make(env_id, tools=...)`` calls."""
    from jaxrl_reason.envs.registry import make  # the registry imports this module lazily

    max_call_length = overrides.pop("max_call_length", 24)
    tools = make_tools(tools)
    task = make(env_id, **overrides)
    if not isinstance(task, ReasoningTask):
        raise ValueError(f"tools work with one-player reasoning tasks; {env_id!r} is a {type(task).__name__}")
    if "tokenizer" not in overrides:  # rebuilt over the default alphabet plus the tools' characters
        chars = "".join(c for t in tools for c in (t.open, t.close)) + CALL_END + ERROR_ANSWER
        extra = "".join(dict.fromkeys(c for c in chars if c not in DEFAULT_ALPHABET))
        task = make(env_id, **overrides, tokenizer=Tokenizer(DEFAULT_ALPHABET + extra))
    return ToolUse(task, tools, max_call_length=max_call_length)
