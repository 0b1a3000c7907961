"""jaxrl_reason: teach small transformers to reason with reinforcement learning and search, in JAX.

Everything users need is importable from here::

    import jaxrl_reason as jr
    env = jr.make("countdown-v0")
"""

from jaxrl_reason.envs import (
    DEFAULT_TOKENIZER,
    ReasoningTask,
    TokenEnv,
    Tokenizer,
    api_test,
    make,
    register,
    register_family,
    registered_envs,
)
from jaxrl_reason.models import KVCache, PolicyValueTransformer, TransformerConfig, rollout
from jaxrl_reason.search import DecodeResult, decode, mcts_policy
from jaxrl_reason.types import EnvSpec, EnvState, SearchOutput, Trajectory

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TOKENIZER",
    "DecodeResult",
    "EnvSpec",
    "EnvState",
    "KVCache",
    "PolicyValueTransformer",
    "ReasoningTask",
    "SearchOutput",
    "TokenEnv",
    "Tokenizer",
    "Trajectory",
    "TransformerConfig",
    "api_test",
    "decode",
    "make",
    "mcts_policy",
    "register",
    "register_family",
    "registered_envs",
    "rollout",
]
