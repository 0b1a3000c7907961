"""LoRA adapters of the transformer's projections (``TransformerConfig.lora_rank > 0``).

Each targeted weight ``W`` of a layer (``lora_targets``: ``"qkv"`` = the query/key/value projection(s),
``"attn_out"``, ``"mlp_in"``, ``"mlp_gate"``, ``"mlp_out"``) gets two params, ``lora_<name>_a [in..., r]``
(normal, std ``1/sqrt(in)``) and ``lora_<name>_b [r, out...]`` (zeros), and the layer computes with
``W + (lora_alpha / r) · A·B``. With B at zero (a fresh adapter) the model is the base model exactly.
Training freezes the base: :func:`param_labels` marks the adapters and the value head ``"adapter"``, the rest
``"frozen"`` (the run's optimizer holds state for the adapters only). :func:`merge_lora` folds the adapters
into the weights and gives the plain model's config (what :func:`jr.save_pretrained` writes).

The adapted weight is formed once per forward (``in·r·out`` flops per weight, small next to a batch's
matmuls); the base weights' gradients are still computed (and dropped by the optimizer).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

#: target -> the layer weights it adapts (a layer has ``qkv``, or ``q`` and ``kv``; ``mlp_gate`` only with
#: a gated MLP)
TARGETS = {
    "qkv": ("qkv", "q", "kv"),
    "attn_out": ("attn_out",),
    "mlp_in": ("mlp_in",),
    "mlp_gate": ("mlp_gate",),
    "mlp_out": ("mlp_out",),
}
DEFAULT_TARGETS = tuple(TARGETS)
DEFAULT_ALPHA = 16.0
PREFIX = "lora_"
#: the params that train besides the adapters (the value head is new to a pretrained model)
TRAINED_WITH_ADAPTERS = ("value_head", "value_bias")
_IN_AXES = {"attn_out": 2}  # attn_out is [H, Dh, D]; every other weight has one input axis


def _names(config) -> list[str]:
    return [name for target in config.lora_targets for name in TARGETS[target]]


def _delta(a, b, scale: float, dtype):
    return (scale * jnp.tensordot(a.astype(jnp.float32), b.astype(jnp.float32), axes=1)).astype(dtype)


def adapt(module: nn.Module, config, w: dict[str, Any]) -> dict[str, Any]:
    """A layer's weights `w` with its adapters declared (in `module`) and added; `w` itself if rank is 0."""
    if not config.lora_rank:
        return w
    out, r, dtype = dict(w), config.lora_rank, jnp.dtype(config.param_dtype)
    for name in _names(config):
        if name not in w:
            continue
        k = _IN_AXES.get(name, 1)
        in_shape, out_shape = w[name].shape[:k], w[name].shape[k:]
        fan_in = 1
        for n in in_shape:
            fan_in *= n
        a_init = nn.initializers.normal(fan_in**-0.5)
        a_names, b_names = (None,) * (k + 1), (None,) * (1 + len(out_shape))
        a = module.param(f"{PREFIX}{name}_a", nn.with_logical_partitioning(a_init, a_names), (*in_shape, r), dtype)
        zeros = nn.initializers.zeros
        b = module.param(f"{PREFIX}{name}_b", nn.with_logical_partitioning(zeros, b_names), (r, *out_shape), dtype)
        out[name] = w[name] + _delta(a, b, config.lora_alpha / r, w[name].dtype)
    return out


def is_adapter(name: str) -> bool:
    return name.startswith(PREFIX)


def param_labels(params: dict[str, Any]) -> dict[str, Any]:
    """Pytree like `params`: ``"adapter"`` for the adapters and the value head, ``"frozen"`` elsewhere."""

    def label(path, _):
        names = [str(getattr(p, "key", p)) for p in path]
        return "adapter" if is_adapter(names[-1]) or names[-1] in TRAINED_WITH_ADAPTERS else "frozen"

    return jax.tree_util.tree_map_with_path(label, params)


def merge_lora(params: dict[str, Any], config) -> tuple[dict[str, Any], Any]:
    """``(params, config)`` with the adapters folded into the weights and ``lora_rank = 0``: the same forward
    as the adapted model (the same arithmetic), as a plain model."""
    if not config.lora_rank:
        return params, config
    scale = config.lora_alpha / config.lora_rank
    merged = {}
    for key, value in params.items():
        if not (isinstance(value, dict) and any(is_adapter(k) for k in value)):
            merged[key] = value
            continue
        layer = {k: v for k, v in value.items() if not is_adapter(k)}
        for name in _names(config):
            if name in layer:
                a, b = value[f"{PREFIX}{name}_a"], value[f"{PREFIX}{name}_b"]
                layer[name] = layer[name] + _delta(a, b, scale, layer[name].dtype)
        merged[key] = layer
    return merged, dataclasses.replace(config, lora_rank=0, lora_alpha=DEFAULT_ALPHA, lora_targets=DEFAULT_TARGETS)
