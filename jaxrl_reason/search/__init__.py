"""Search over tokens: batched MCTS on mctx and test-time decoding methods."""

from jaxrl_reason.search.mcts import NodeEmbedding, encode_prefix, mcts_policy

__all__ = ["NodeEmbedding", "encode_prefix", "mcts_policy"]
