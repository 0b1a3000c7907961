"""The policy-value transformer, KV-cache sampling, FLOP accounting and Hugging Face checkpoint I/O."""

from jaxrl_reason.models.flops import (
    decode_flops_per_token,
    forward_flops,
    forward_flops_per_token,
    train_flops_per_token,
)
from jaxrl_reason.models.lora import merge_lora, param_labels
from jaxrl_reason.models.pretrained import load_pretrained, pretrained_config, save_pretrained
from jaxrl_reason.models.prm import PolicyWithPRM
from jaxrl_reason.models.sampling import mask_logits, rollout, sample_action
from jaxrl_reason.models.transformer import (
    KVCache,
    LayerSegment,
    PolicyValueTransformer,
    TransformerConfig,
    rope_frequencies,
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
    "load_pretrained",
    "mask_logits",
    "merge_lora",
    "param_labels",
    "pretrained_config",
    "rollout",
    "rope_frequencies",
    "sample_action",
    "save_pretrained",
    "train_flops_per_token",
    "two_hot",
    "value_bins",
]
