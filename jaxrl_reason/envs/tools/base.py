"""What a tool is, and the registry of tools by name.

A tool is called from inside a response: the model writes the tool's ``open`` character, the call's text
and ``=``; the environment then writes the tool's answer followed by the tool's ``close`` character (or
``?`` + ``close`` when the call fails). Example with the calculator: the model writes ``[47*8=``, the env
writes ``376]``. See :class:`~jaxrl_reason.envs.tools.tool_use.ToolUse`.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

from jaxrl_reason.types import Array

#: The character that ends a call (the model writes it; the env answers after it).
CALL_END = "="
#: The answer of a failed call (before the tool's close character).
ERROR_ANSWER = "?"


class Tool(abc.ABC):
    """A tool: a name, the characters that open and close its calls, and a batched-or-not pure ``run``.

    ``run`` is traced inside the env's ``step`` (under ``jit``/``vmap``); a host tool wraps Python in
    ``jax.pure_callback``. It must never raise inside jit: a bad call returns ``ok = False``.
    """

    name: str
    open: str
    close: str
    max_answer_length: int  # answer tokens, without the close character

    @abc.abstractmethod
    def run(self, tokenizer, call: Array, call_length: Array, active: Array) -> tuple[Array, Array, Array]:
        """Answers ``call[:call_length]`` (token ids of the text between ``open`` and ``=``).

        ``active`` ([] bool) is False on the steps where no call ends; a tool may skip work there (its
        answer is then ignored). Returns ``(answer [max_answer_length] int32, answer_length [] int32, ok [] bool)``.
        """


_TOOLS: dict[str, Callable[..., Tool]] = {}


def register_tool(name: str, factory: Callable[..., Tool]) -> None:
    """Registers a tool factory under `name` (``make_tool(name, **kwargs)`` builds one)."""
    if name in _TOOLS:
        raise ValueError(f"tool {name!r} is already registered")
    _TOOLS[name] = factory


def registered_tools() -> tuple[str, ...]:
    return tuple(sorted(_TOOLS))


def make_tools(specs: Any) -> tuple[Tool, ...]:
    """Tools from one registered name or a sequence of names and Tool objects (a name is one tool, not its letters)."""
    return tuple(make_tool(t) for t in ((specs,) if isinstance(specs, str) else specs))


def make_tool(spec: Any) -> Tool:
    """A tool from a registered name, or `spec` itself when it is already a :class:`Tool`."""
    if isinstance(spec, Tool):
        return spec
    if spec not in _TOOLS:
        raise ValueError(f"unknown tool {spec!r}; registered: {', '.join(registered_tools()) or '(none)'}")
    return _TOOLS[spec]()
