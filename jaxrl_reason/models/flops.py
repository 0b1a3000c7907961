"""FLOP accounting of the policy-value transformer (matmuls and attention; a multiply-add is 2 FLOPs).

Counted per token, as computed by this implementation (the PaLM/Chinchilla convention):

* per layer: QKV projection ``2·D·(H·Dh + 2·G·Dh)`` (``H`` query heads, ``G`` K/V heads, ``Dh`` head
  width; ``2·D·3D`` for multi-head with ``H·Dh = D``), attention output ``2·H·Dh·D``, MLP ``2·2·D·M``
  (``2·3·D·M`` for SwiGLU and GeGLU: gate, up, down), attention scores and
  weighted values ``2·2·S·H·Dh`` where ``S`` is the number of key slots each token is scored against —
  the full ``T`` for a forward over ``T`` tokens (the causal mask is applied to a dense score
  matrix, so masked entries are computed too), ``max_length + 1`` for :meth:`decode`;
* heads: policy ``2·D·A`` and value ``2·D·(1 or num_value_bins)``.

Norms (QK-norm included), biases, softmax, rotary embeddings and the activations are not counted (a
few percent of the total at ``D >= 64``: ``cost_analysis`` of the compiled forward agrees within 6%,
tested), nor is the embedding lookup (a one-hot matmul for vocabularies up to 4096, ``2·V·D`` FLOPs
per token, counted as a lookup).
A training step (forward + backward) is 3× the forward.
"""

from __future__ import annotations

from jaxrl_reason.models.transformer import TransformerConfig


def _attention_width(config: TransformerConfig) -> int:
    """``H·Dh``: the width of the queries (``D`` unless ``head_dim`` is set otherwise; duck-typed model configs
    without ``num_heads`` count as one head of width ``D``)."""
    heads = getattr(config, "num_heads", 1)
    head_dim = getattr(config, "head_dim", None) or config.d_model // heads
    return heads * head_dim


def _matmul_flops_per_token(config: TransformerConfig) -> int:
    d, m = config.d_model, config.mlp_dim
    q_width = _attention_width(config)
    kv_heads = getattr(config, "num_kv_heads", None)  # duck-typed model configs may lack it: multi-head
    kv_width = q_width if kv_heads is None else kv_heads * (q_width // getattr(config, "num_heads", 1))
    mlp_matmuls = 2 if getattr(config, "mlp", "gelu") == "gelu" else 3  # gated (SwiGLU, GeGLU): gate, up, down
    per_layer = 2 * d * (q_width + 2 * kv_width) + 2 * q_width * d + mlp_matmuls * 2 * d * m
    value_out = 1 if config.value_head == "scalar" else config.num_value_bins
    return config.num_layers * per_layer + 2 * d * (config.num_actions + value_out)


def _attention_flops_per_token(config: TransformerConfig, num_keys: int) -> int:
    return config.num_layers * 2 * 2 * num_keys * _attention_width(config)


def _check_length(name: str, n: int) -> None:
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"{name}: expected a positive int, got {n!r}")


def forward_flops_per_token(config: TransformerConfig, context_length: int) -> int:
    """FLOPs per token of a full forward (:meth:`PolicyValueTransformer.apply`) over ``context_length`` tokens."""
    _check_length("context_length", context_length)
    return _matmul_flops_per_token(config) + _attention_flops_per_token(config, context_length)


def train_flops_per_token(config: TransformerConfig, context_length: int) -> int:
    """FLOPs per token of a training step (forward + backward = 3× forward) at ``context_length``."""
    return 3 * forward_flops_per_token(config, context_length)


def decode_flops_per_token(config: TransformerConfig, cache_length: int | None = None) -> int:
    """FLOPs of one :meth:`PolicyValueTransformer.decode` step per row.

    ``cache_length`` is the number of cache slots scored (default ``config.max_length``: decode scores
    the whole cache under a mask, plus the new token itself).
    """
    cache_length = config.max_length if cache_length is None else cache_length
    _check_length("cache_length", cache_length)
    return _matmul_flops_per_token(config) + _attention_flops_per_token(config, cache_length + 1)


def forward_flops(config: TransformerConfig, batch_size: int, length: int) -> int:
    """Total FLOPs of a full forward over ``[batch_size, length]`` tokens."""
    return batch_size * length * forward_flops_per_token(config, length)
