"""jaxrl_reason: teach small transformers to reason with reinforcement learning and search, in JAX.

Everything users need is importable from here::

    import jaxrl_reason as jr
    env = jr.make("countdown-v0")
"""

from jaxrl_reason.envs import (
    ASCII_TOKENIZER,
    DEFAULT_TOKENIZER,
    ConnectFour,
    HostVerifiedTask,
    ReasoningTask,
    TicTacToe,
    TokenEnv,
    Tokenizer,
    api_test,
    make,
    register,
    register_family,
    registered_envs,
)
from jaxrl_reason.types import EnvSpec, EnvState, SearchOutput, Trajectory

__version__ = "0.1.0"

__all__ = [
    "ASCII_TOKENIZER",
    "ConnectFour",
    "DEFAULT_TOKENIZER",
    "EnvSpec",
    "EnvState",
    "HostVerifiedTask",
    "ReasoningTask",
    "SearchOutput",
    "TicTacToe",
    "TokenEnv",
    "Tokenizer",
    "Trajectory",
    "api_test",
    "make",
    "register",
    "register_family",
    "registered_envs",
]
