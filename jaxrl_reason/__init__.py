"""jaxrl_reason: teach small transformers to reason with reinforcement learning and search, in JAX.

Everything users need is importable from here::

    import jaxrl_reason as jr
    env = jr.make("countdown-v0")

The names load lazily (PEP 562): importing the package imports no jax, so the command lines
(``python -m jaxrl_reason.train``) can set XLA's device flags first. Model internals, losses and PRM
utilities live in the namespaces ``jr.models``, ``jr.algorithms``, ``jr.search``, ``jr.run``,
``jr.training``, ``jr.evaluation`` and ``jr.problems``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_EXPORTS = {
    "ASCII_TOKENIZER": "jaxrl_reason.envs",
    "BPETokenizer": "jaxrl_reason.envs",
    "DEFAULT_TOKENIZER": "jaxrl_reason.envs",
    "ConnectFour": "jaxrl_reason.envs",
    "HostTool": "jaxrl_reason.envs",
    "HostVerifiedTask": "jaxrl_reason.envs",
    "ReasoningTask": "jaxrl_reason.envs",
    "RetokenizedTask": "jaxrl_reason.envs",
    "TicTacToe": "jaxrl_reason.envs",
    "TokenEnv": "jaxrl_reason.envs",
    "Tokenizer": "jaxrl_reason.envs",
    "Tool": "jaxrl_reason.envs",
    "ToolUse": "jaxrl_reason.envs",
    "api_test": "jaxrl_reason.envs",
    "make": "jaxrl_reason.envs",
    "register": "jaxrl_reason.envs",
    "register_family": "jaxrl_reason.envs",
    "registered_envs": "jaxrl_reason.envs",
    "register_tool": "jaxrl_reason.envs",
    "registered_tools": "jaxrl_reason.envs",
    "with_tokenizer": "jaxrl_reason.envs",
    "EnvSpec": "jaxrl_reason.types",
    "EnvState": "jaxrl_reason.types",
    "SearchOutput": "jaxrl_reason.types",
    "StepSearchOutput": "jaxrl_reason.types",
    "Trajectory": "jaxrl_reason.types",
    "ConfigError": "jaxrl_reason.config",
    "base_config": "jaxrl_reason.config",
    "load_config": "jaxrl_reason.config",
    "make_mesh": "jaxrl_reason.parallel",
    "read_problems": "jaxrl_reason.datasets",
    "write_problems": "jaxrl_reason.datasets",
    "PolicyValueTransformer": "jaxrl_reason.models",
    "TransformerConfig": "jaxrl_reason.models",
    "rollout": "jaxrl_reason.models",
    "load_pretrained": "jaxrl_reason.models",
    "save_pretrained": "jaxrl_reason.models",
    "DecodeResult": "jaxrl_reason.search",
    "SearchConfig": "jaxrl_reason.search",
    "decode": "jaxrl_reason.search",
    "mcts_policy": "jaxrl_reason.search",
    "random_rollout_value": "jaxrl_reason.search",
    "selfplay": "jaxrl_reason.search",
    "step_mcts_policy": "jaxrl_reason.search",
    "Agent": "jaxrl_reason.run",
    "CheckpointError": "jaxrl_reason.run",
    "Checkpointer": "jaxrl_reason.run",
    "evaluate": "jaxrl_reason.evaluation",
    "TrainState": "jaxrl_reason.training",
    "train": "jaxrl_reason.training",
}
_SUBPACKAGES = ("algorithms", "envs", "evaluation", "models", "problems", "run", "search", "training")

__all__ = sorted([*_EXPORTS, *_SUBPACKAGES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"jaxrl_reason.{name}")
    else:
        raise AttributeError(f"module 'jaxrl_reason' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers see the eager imports
    from jaxrl_reason.config import ConfigError, base_config, load_config  # noqa: F401
    from jaxrl_reason.datasets import read_problems, write_problems  # noqa: F401
    from jaxrl_reason.envs import (  # noqa: F401
        ASCII_TOKENIZER,
        DEFAULT_TOKENIZER,
        BPETokenizer,
        ConnectFour,
        HostTool,
        HostVerifiedTask,
        ReasoningTask,
        RetokenizedTask,
        TicTacToe,
        TokenEnv,
        Tokenizer,
        Tool,
        ToolUse,
        api_test,
        make,
        register,
        register_family,
        register_tool,
        registered_envs,
        registered_tools,
        with_tokenizer,
    )
    from jaxrl_reason.evaluation import evaluate  # noqa: F401
    from jaxrl_reason.models import (  # noqa: F401
        PolicyValueTransformer,
        TransformerConfig,
        load_pretrained,
        rollout,
        save_pretrained,
    )
    from jaxrl_reason.parallel import make_mesh  # noqa: F401
    from jaxrl_reason.run import Agent, Checkpointer, CheckpointError  # noqa: F401
    from jaxrl_reason.search import (  # noqa: F401
        DecodeResult,
        SearchConfig,
        decode,
        mcts_policy,
        random_rollout_value,
        selfplay,
        step_mcts_policy,
    )
    from jaxrl_reason.training import TrainState, train  # noqa: F401
    from jaxrl_reason.types import EnvSpec, EnvState, SearchOutput, StepSearchOutput, Trajectory  # noqa: F401
