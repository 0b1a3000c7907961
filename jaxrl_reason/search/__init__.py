"""Search over tokens: batched MCTS on mctx, the self-play episode runner and test-time decoding methods."""

from jaxrl_reason.search.config import SearchConfig, search_config_from
from jaxrl_reason.search.decoding import METHODS, DecodeResult, decode, value_prm
from jaxrl_reason.search.mcts import NodeEmbedding, encode_prefix, mcts_policy, random_rollout_value
from jaxrl_reason.search.reference import dense_mcts_policy
from jaxrl_reason.search.selfplay import selfplay

__all__ = [
    "METHODS",
    "DecodeResult",
    "NodeEmbedding",
    "SearchConfig",
    "decode",
    "dense_mcts_policy",
    "encode_prefix",
    "mcts_policy",
    "random_rollout_value",
    "search_config_from",
    "selfplay",
    "value_prm",
]
