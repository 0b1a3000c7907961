"""Search over tokens and over reasoning steps (batched MCTS on mctx), the self-play episode runner and
test-time decoding methods."""

from jaxrl_reason.search.config import SearchConfig, search_config_from
from jaxrl_reason.search.decoding import METHODS, DecodeResult, decode, value_prm
from jaxrl_reason.search.mcts import NodeEmbedding, encode_prefix, mcts_policy, random_rollout_value
from jaxrl_reason.search.reference import dense_mcts_policy, dense_step_mcts_policy
from jaxrl_reason.search.selfplay import selfplay
from jaxrl_reason.search.step_mcts import StepNode, default_step_ids, merge_candidates, play_step, step_mcts_policy

__all__ = [
    "METHODS",
    "DecodeResult",
    "NodeEmbedding",
    "SearchConfig",
    "StepNode",
    "decode",
    "dense_mcts_policy",
    "dense_step_mcts_policy",
    "default_step_ids",
    "encode_prefix",
    "merge_candidates",
    "play_step",
    "mcts_policy",
    "random_rollout_value",
    "search_config_from",
    "selfplay",
    "step_mcts_policy",
    "value_prm",
]
