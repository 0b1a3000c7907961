"""The policy-value transformer, KV-cache sampling and FLOP accounting."""

from jaxrl_reason.models.flops import (
    decode_flops_per_token,
    forward_flops,
    forward_flops_per_token,
    train_flops_per_token,
)
from jaxrl_reason.models.prm import PolicyWithPRM
from jaxrl_reason.models.sampling import mask_logits, rollout, sample_action
from jaxrl_reason.models.transformer import (
    KVCache,
    LayerSegment,
    PolicyValueTransformer,
    TransformerConfig,
    two_hot,
    value_bins,
)

__all__ = [
    "KVCache",
    "LayerSegment",
    "PolicyValueTransformer",
    "PolicyWithPRM",
    "TransformerConfig",
    "decode_flops_per_token",
    "forward_flops",
    "forward_flops_per_token",
    "mask_logits",
    "rollout",
    "sample_action",
    "train_flops_per_token",
    "two_hot",
    "value_bins",
]
