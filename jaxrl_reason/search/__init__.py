"""Search over tokens: batched MCTS on mctx and test-time decoding methods."""

from jaxrl_reason.search.decoding import METHODS, DecodeResult, decode
from jaxrl_reason.search.mcts import NodeEmbedding, encode_prefix, mcts_policy, random_rollout_value
from jaxrl_reason.search.reference import dense_mcts_policy

__all__ = [
    "METHODS",
    "DecodeResult",
    "NodeEmbedding",
    "decode",
    "dense_mcts_policy",
    "encode_prefix",
    "mcts_policy",
    "random_rollout_value",
]
