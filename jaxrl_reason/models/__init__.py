"""The policy-value transformer, KV-cache sampling and FLOP accounting."""

from jaxrl_reason.models.transformer import (
    KVCache,
    PolicyValueTransformer,
    TransformerConfig,
    two_hot,
    value_bins,
)

__all__ = [
    "KVCache",
    "PolicyValueTransformer",
    "TransformerConfig",
    "two_hot",
    "value_bins",
]
