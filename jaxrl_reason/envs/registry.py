"""Environment registry: ``make(env_id, **overrides)``, ``register``, ``registered_envs``.

Ids are ``name-vN``. ``make("name")`` resolves to the highest registered version of ``name``. An
entry point is a factory (any callable returning a :class:`~jaxrl_reason.envs.core.TokenEnv`) or a
lazy ``"package.module:attr"`` string, imported on first ``make``. Ids with a registered family prefix
(e.g. ``"rg/"``) are built by that family's factory, which receives the rest of the id.
"""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Callable
from typing import Any, Union

EntryPoint = Union[str, Callable[..., Any]]

_ID_RE = re.compile(r"^(?P<name>[A-Za-z0-9_./-]+?)-v(?P<version>\d+)$")
_REGISTRY: dict[str, EntryPoint] = {}
_FAMILIES: dict[str, EntryPoint] = {}


def _parse(env_id: str) -> tuple[str, int]:
    m = _ID_RE.match(env_id)
    if not m:
        raise ValueError(f"env id {env_id!r} is not of the form 'name-vN' (e.g. 'countdown-v0')")
    return m["name"], int(m["version"])


def register(env_id: str, entry_point: EntryPoint) -> None:
    """Registers `env_id` (``name-vN``); raises ValueError if it is taken or malformed."""
    _parse(env_id)
    if env_id in _REGISTRY:
        raise ValueError(f"env id {env_id!r} is already registered (to {_REGISTRY[env_id]!r})")
    if not (callable(entry_point) or (isinstance(entry_point, str) and ":" in entry_point)):
        raise ValueError(f"entry_point must be a callable or a 'module:attr' string, got {entry_point!r}")
    _REGISTRY[env_id] = entry_point


def register_family(prefix: str, factory: EntryPoint) -> None:
    """Registers a family of ids ``prefix + rest``, built by ``factory(rest, **overrides)``."""
    if prefix in _FAMILIES:
        raise ValueError(f"env family {prefix!r} is already registered")
    _FAMILIES[prefix] = factory


def registered_envs() -> tuple[str, ...]:
    """The registered env ids, sorted."""
    return tuple(sorted(_REGISTRY))


def _resolve(entry_point: EntryPoint) -> Callable[..., Any]:
    if callable(entry_point):
        return entry_point
    module, _, attr = entry_point.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _call(factory: Callable[..., Any], env_id: str, args: tuple, overrides: dict) -> Any:
    try:
        sig = inspect.signature(factory)
        sig.bind(*args, **overrides)
    except TypeError as e:
        accepted = [p for p in sig.parameters if p not in ("self", "args", "kwargs")][len(args) :]
        raise ValueError(
            f"env {env_id!r} does not accept overrides {sorted(overrides)}: {e}. It takes: {accepted}"
        ) from None
    except ValueError:  # no signature (builtins): let the call itself complain
        pass
    return factory(*args, **overrides)


def make(env_id: str, **overrides: Any):
    """Builds a registered env; ``overrides`` are passed to its factory (difficulty, lengths, ...).

    ``tools=("calc", ...)`` (names of registered tools or Tool objects) wraps a reasoning task with them
    (:class:`~jaxrl_reason.envs.tools.ToolUse`); its tokenizer gains the tools' characters.

    Raises:
      ValueError: for an unknown id (listing the registered ones) or an override the env does not take.
    """
    if overrides.get("tools"):
        from jaxrl_reason.envs.tools import with_tools

        return with_tools(env_id, **overrides)
    overrides.pop("tools", None)
    for prefix, family in _FAMILIES.items():
        if env_id.startswith(prefix):
            return _call(_resolve(family), env_id, (env_id[len(prefix) :],), overrides)
    if env_id not in _REGISTRY and not _ID_RE.match(env_id):
        versions = [(v, i) for i in _REGISTRY for n, v in [_parse(i)] if n == env_id]
        if versions:
            env_id = max(versions)[1]
    if env_id not in _REGISTRY:
        known = ", ".join(registered_envs()) or "(none)"
        families = "".join(f", {p}<name>-vN" for p in _FAMILIES)
        raise ValueError(f"unknown env id {env_id!r}; registered: {known}{families}")
    return _call(_resolve(_REGISTRY[env_id]), env_id, (), overrides)


# Built-in envs, imported lazily on first make().
for _id, _ep in {
    "addition-v0": "jaxrl_reason.envs.tasks.addition:Addition",
    "countdown-v0": "jaxrl_reason.envs.tasks.countdown:Countdown",
    "letter-count-v0": "jaxrl_reason.envs.tasks.letter_count:LetterCount",
    "multiply-v0": "jaxrl_reason.envs.tasks.multiplication:Multiplication",
    "sort-v0": "jaxrl_reason.envs.tasks.sorting:Sort",
    "tic-tac-toe-v0": "jaxrl_reason.envs.games.tic_tac_toe:TicTacToe",
    "connect-four-v0": "jaxrl_reason.envs.games.connect_four:ConnectFour",
}.items():
    register(_id, _ep)

# Optional families (their packages are imported on first make()).
register_family("rg/", "jaxrl_reason.envs.adapters.reasoning_gym:make_rg_env")
