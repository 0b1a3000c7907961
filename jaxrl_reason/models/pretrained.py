"""Hugging Face checkpoints in and out: Llama 3, Qwen2/2.5, Qwen3, Gemma 2 and Gemma 3 (text) decoders as a
policy-value model.

:func:`load_pretrained` reads a local Hugging Face directory (``config.json`` and ``model.safetensors``
or a sharded ``model.safetensors.index.json``) with the ``safetensors`` library (numpy; no torch, no
download), maps the config to a :class:`TransformerConfig` and each tensor to our params through one
name table per family, and adds a value head (fresh, or the one :func:`save_pretrained` wrote beside
the model in ``value_head.safetensors``). :func:`save_pretrained` writes the same layout back, with
Hugging Face's tensor names and shapes, so the policy can be served by any Hugging Face-compatible
stack; load -> save -> load is bit-exact.

Tensor layouts (Hugging Face ``nn.Linear`` weights are ``[out, in]``; ours are ``[in, out]`` and keep
the head axis apart): ``q_proj [H·Dh, D] -> q [D, H, Dh]``, ``k_proj``/``v_proj [G·Dh, D] -> kv [D, 2,
G, Dh]`` (fused into ``qkv [D, 3, H, Dh]`` when ``G == H``), ``o_proj [D, H·Dh] -> attn_out [H, Dh,
D]``, ``gate/up_proj [M, D] -> mlp_gate/mlp_in [D, M]``, ``down_proj [D, M] -> mlp_out [M, D]``,
``lm_head [V, D] -> policy_head [D, V]`` (absent when the embeddings are tied).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable
from typing import Any

import jax
import ml_dtypes
import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from jaxrl_reason.models.lora import merge_lora
from jaxrl_reason.models.transformer import PolicyValueTransformer, TransformerConfig
from jaxrl_reason.parallel import param_shardings

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
VALUE_HEAD_FILE = "value_head.safetensors"

_NP_DTYPES = {
    "float32": np.dtype(np.float32),
    "bfloat16": np.dtype(ml_dtypes.bfloat16),
    "float16": np.dtype(np.float16),
}


#: The TransformerConfig options that tell the families apart, with the Llama values. (Llama's and Qwen3's
#: config.json "attention_bias" would also bias o_proj: not supported; Qwen2 biases q/k/v only.)
_FAMILY_OPTIONS = dict(mlp="swiglu", qkv_bias=False, qk_norm=False, embed_scale=False, norm_unit_offset=False,
                       post_norms=False)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class _Family:
    architecture: str  # config.json "architectures"[0]
    model_type: str
    activation: str  # config.json "hidden_act" / "hidden_activation"
    options: tuple[tuple[str, Any], ...]  # the _FAMILY_OPTIONS that differ from Llama's

    @property
    def config_options(self) -> dict[str, Any]:
        return {**_FAMILY_OPTIONS, **dict(self.options)}


_FAMILIES = {
    f.architecture: f
    for f in (
        _Family("LlamaForCausalLM", "llama", "silu", ()),
        _Family("Qwen2ForCausalLM", "qwen2", "silu", (("qkv_bias", True),)),
        _Family("Qwen3ForCausalLM", "qwen3", "silu", (("qk_norm", True),)),
        _Family("Gemma2ForCausalLM", "gemma2", "gelu_pytorch_tanh",
                (("mlp", "geglu"), ("embed_scale", True), ("norm_unit_offset", True), ("post_norms", True))),
        _Family("Gemma3ForCausalLM", "gemma3_text", "gelu_pytorch_tanh",
                (("mlp", "geglu"), ("embed_scale", True), ("norm_unit_offset", True), ("post_norms", True),
                 ("qk_norm", True))),
    )
}  # fmt: skip
_GEMMAS = ("gemma2", "gemma3_text")  # sliding-window families: the length is capped at the window
_LOCAL, _GLOBAL = "sliding_attention", "full_attention"  # Gemma 3's layer types

# -- the name table ------------------------------------------------------------------------------------
# (Hugging Face name under "model.layers.{i}.", our per-layer name, layout kind). Kinds are in _KINDS.
_LAYER_TABLE = (
    ("input_layernorm.weight", "attn_norm", "norm"),
    ("self_attn.q_proj.weight", "q", "q"),
    ("self_attn.k_proj.weight", "k", "kv"),
    ("self_attn.v_proj.weight", "v", "kv"),
    ("self_attn.o_proj.weight", "attn_out", "o"),
    ("post_attention_layernorm.weight", "mlp_norm", "norm"),
    ("mlp.gate_proj.weight", "mlp_gate", "up"),
    ("mlp.up_proj.weight", "mlp_in", "up"),
    ("mlp.down_proj.weight", "mlp_out", "down"),
)
_BIAS_TABLE = (
    ("self_attn.q_proj.bias", "q_bias", "q_bias"),
    ("self_attn.k_proj.bias", "k_bias", "kv_bias"),
    ("self_attn.v_proj.bias", "v_bias", "kv_bias"),
)
# Gemma 2: a norm after attention and around the MLP (its "post_attention_layernorm" is not Llama's)
_GEMMA2_LAYER_TABLE = (
    ("input_layernorm.weight", "attn_norm", "norm"),
    ("self_attn.q_proj.weight", "q", "q"),
    ("self_attn.k_proj.weight", "k", "kv"),
    ("self_attn.v_proj.weight", "v", "kv"),
    ("self_attn.o_proj.weight", "attn_out", "o"),
    ("post_attention_layernorm.weight", "attn_post_norm", "norm"),
    ("pre_feedforward_layernorm.weight", "mlp_norm", "norm"),
    ("post_feedforward_layernorm.weight", "mlp_post_norm", "norm"),
    ("mlp.gate_proj.weight", "mlp_gate", "up"),
    ("mlp.up_proj.weight", "mlp_in", "up"),
    ("mlp.down_proj.weight", "mlp_out", "down"),
)
_QK_NORM_TABLE = (
    ("self_attn.q_norm.weight", "q_norm", "head_norm"),
    ("self_attn.k_norm.weight", "k_norm", "head_norm"),
)


def _kinds(c: TransformerConfig) -> dict[str, tuple[tuple[int, ...], Callable, Callable]]:
    """kind -> (Hugging Face shape, HF array -> ours, ours -> HF array); all exact reshapes/transposes."""
    d, h, g, dh, m = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
    return {
        "norm": ((d,), lambda w: w, lambda w: w),
        "head_norm": ((dh,), lambda w: w, lambda w: w),
        "q": ((h * dh, d), lambda w: w.T.reshape(d, h, dh), lambda w: w.reshape(d, h * dh).T),
        "kv": ((g * dh, d), lambda w: w.T.reshape(d, g, dh), lambda w: w.reshape(d, g * dh).T),
        "o": ((d, h * dh), lambda w: w.T.reshape(h, dh, d), lambda w: w.reshape(h * dh, d).T),
        "up": ((m, d), lambda w: w.T, lambda w: w.T),
        "down": ((d, m), lambda w: w.T, lambda w: w.T),
        "q_bias": ((h * dh,), lambda w: w.reshape(h, dh), lambda w: w.reshape(h * dh)),
        "kv_bias": ((g * dh,), lambda w: w.reshape(g, dh), lambda w: w.reshape(g * dh)),
        "embed": ((c.vocab_size, d), lambda w: w, lambda w: w),
        "lm_head": ((c.num_actions, d), lambda w: w.T, lambda w: w.T),
    }


def _table(c: TransformerConfig) -> list[tuple[str, tuple[str, ...], str]]:
    """Every Hugging Face tensor of a model with config `c`: (HF name, our path (pre-fusion), kind)."""
    layer = (
        list(_GEMMA2_LAYER_TABLE if c.post_norms else _LAYER_TABLE)
        + (list(_BIAS_TABLE) if c.qkv_bias else [])
        + (list(_QK_NORM_TABLE) if c.qk_norm else [])
    )
    rows = [("model.embed_tokens.weight", ("embed",), "embed"), ("model.norm.weight", ("final_norm",), "norm")]
    if not c.tie_embeddings:
        rows.append(("lm_head.weight", ("policy_head",), "lm_head"))
    for i in range(c.num_layers):
        rows += [(f"model.layers.{i}.{hf}", (f"layer_{i}", ours), kind) for hf, ours, kind in layer]
    return rows


def _fuse(layer: dict[str, np.ndarray], c: TransformerConfig) -> dict[str, np.ndarray]:
    """Separate q/k/v (and biases) -> our fused layouts: ``qkv`` (multi-head) or ``q`` + ``kv``."""
    out = {k: v for k, v in layer.items() if k not in ("q", "k", "v", "q_bias", "k_bias", "v_bias")}
    if c.num_kv_heads == c.num_heads:
        out["qkv"] = np.stack([layer["q"], layer["k"], layer["v"]], axis=1)
        if c.qkv_bias:
            out["qkv_bias"] = np.stack([layer["q_bias"], layer["k_bias"], layer["v_bias"]], axis=0)
    else:
        out["q"], out["kv"] = layer["q"], np.stack([layer["k"], layer["v"]], axis=1)
        if c.qkv_bias:
            out["q_bias"], out["kv_bias"] = layer["q_bias"], np.stack([layer["k_bias"], layer["v_bias"]], axis=0)
    return out


def _split(layer: dict[str, Any], c: TransformerConfig) -> dict[str, np.ndarray]:
    """Inverse of :func:`_fuse`."""
    out = {k: np.asarray(v) for k, v in layer.items() if k not in ("qkv", "qkv_bias", "q", "kv", "q_bias", "kv_bias")}
    if c.num_kv_heads == c.num_heads:
        qkv = np.asarray(layer["qkv"])
        out["q"], out["k"], out["v"] = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        if c.qkv_bias:
            b = np.asarray(layer["qkv_bias"])
            out["q_bias"], out["k_bias"], out["v_bias"] = b[0], b[1], b[2]
    else:
        kv = np.asarray(layer["kv"])
        out["q"], out["k"], out["v"] = np.asarray(layer["q"]), kv[:, 0], kv[:, 1]
        if c.qkv_bias:
            b = np.asarray(layer["kv_bias"])
            out["q_bias"], out["k_bias"], out["v_bias"] = np.asarray(layer["q_bias"]), b[0], b[1]
    return out


# -- config.json ---------------------------------------------------------------------------------------
def _rope(hf: dict[str, Any]) -> tuple[float, tuple[float, float, float, float] | None]:
    """(theta, Llama-3 scaling or None) from ``rope_theta``/``rope_scaling`` (or ``rope_parameters``)."""
    params = hf.get("rope_parameters") or {}
    scaling = hf.get("rope_scaling") or params
    theta = float(hf.get("rope_theta", params.get("rope_theta", 10_000.0)))
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return theta, None
    if kind != "llama3":
        raise ValueError(f"{CONFIG_FILE}: rope scaling {kind!r} is not supported (expected 'default' or 'llama3')")
    keys = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return theta, tuple(float(scaling[k]) for k in keys)


def _gemma3_rope(hf: dict[str, Any]) -> dict[str, Any]:
    """Gemma 3's rotary options: each layer's type (``layer_types``, or every ``sliding_window_pattern``-th
    layer global), the global theta with optional linear scaling, the local layers' theta. Reads the
    per-layer-type ``rope_parameters`` of recent configs and the older ``rope_theta`` /
    ``rope_local_base_freq`` / ``rope_scaling`` keys."""
    n = hf["num_hidden_layers"]
    pattern = hf.get("sliding_window_pattern", 6)
    types = hf.get("layer_types") or [_LOCAL if (i + 1) % pattern else _GLOBAL for i in range(n)]
    if len(types) != n or set(types) - {_LOCAL, _GLOBAL}:
        raise ValueError(f"{CONFIG_FILE}: layer_types: expected {n} of {_LOCAL!r}/{_GLOBAL!r}, got {types!r}")
    params = hf.get("rope_parameters") or {}
    full, local = params.get(_GLOBAL) or {}, params.get(_LOCAL) or {}
    scaling = {**(hf.get("rope_scaling") or {}), **full}
    kinds = (scaling.get("rope_type", scaling.get("type", "default")), local.get("rope_type", "default"))
    if kinds[0] not in ("default", "linear") or kinds[1] != "default":
        raise ValueError(
            f"{CONFIG_FILE}: Gemma 3 rope scaling {kinds!r} is not supported (expected 'default' or 'linear' "
            "for the global layers, 'default' for the local ones)"
        )
    return dict(
        rope_base=float(full.get("rope_theta", hf.get("rope_theta", 1e6))),
        rope_local_base=float(local.get("rope_theta", hf.get("rope_local_base_freq", 1e4))),
        rope_linear_factor=float(scaling.get("factor", 1.0)) if kinds[0] == "linear" else 1.0,
        local_layers=tuple(i for i, kind in enumerate(types) if kind == _LOCAL),
    )


def _rope_options(hf: dict[str, Any], family: _Family) -> dict[str, Any]:
    if family.model_type == "gemma3_text":
        return _gemma3_rope(hf)
    theta, scaling = _rope(hf)
    return dict(rope_base=theta, rope_scaling=scaling)


def _family_options(hf: dict[str, Any], family: _Family, max_length: int | None) -> dict[str, Any]:
    """The options of one checkpoint beyond the family's fixed ones; rejects what we do not compute."""
    act = hf.get("hidden_activation") or hf.get("hidden_act") or family.activation
    if act != family.activation or hf.get("mlp_bias", False):
        raise ValueError(f"{CONFIG_FILE}: expected activation {family.activation!r} without mlp_bias, got {act!r}")
    if hf.get("attention_bias", False) and not family.config_options["qkv_bias"]:
        raise ValueError(
            f"{CONFIG_FILE}: attention_bias (biases on q/k/v/o) is not supported for {family.architecture}"
        )
    if hf.get("use_sliding_window", False):
        raise ValueError(f"{CONFIG_FILE}: sliding-window attention (use_sliding_window) is not supported")
    if hf.get("use_bidirectional_attention", False):
        raise ValueError(f"{CONFIG_FILE}: use_bidirectional_attention is not supported (a decoder is causal)")
    longest = hf.get("max_position_embeddings", 2048)
    if family.model_type not in _GEMMAS:
        return dict(max_length=max_length or longest)
    # Sliding-window layers equal global ones while every sequence fits in the window: cap the length.
    window = hf.get("sliding_window") or longest
    if max_length is not None and max_length > window:
        raise ValueError(
            f"max_length: Gemma's sliding window is not implemented; expected <= {window}, got {max_length}"
        )
    options = dict(
        max_length=min(max_length or longest, window),
        query_scale=float(hf.get("query_pre_attn_scalar", 256)),
        attn_softcap=hf.get("attn_logit_softcapping"),
        logit_softcap=hf.get("final_logit_softcapping"),
    )
    return options  # fmt: skip


def config_from_hf(
    hf: dict[str, Any], *, dtype: str = "float32", param_dtype: str | None = None, max_length: int | None = None,
    value_head: str = "scalar", num_value_bins: int = 51,
) -> TransformerConfig:  # fmt: skip
    """Our :class:`TransformerConfig` of a Hugging Face ``config.json`` dict (policy over the whole vocabulary).

    Raises ``ValueError`` for an architecture or an option this model does not compute.
    """
    family = _family(hf)
    heads = hf["num_attention_heads"]
    tied_default = family.model_type in _GEMMAS
    return TransformerConfig(
        num_actions=hf["vocab_size"], vocab_size=hf["vocab_size"],
        d_model=hf["hidden_size"], num_heads=heads, num_layers=hf["num_hidden_layers"],
        mlp_dim=hf["intermediate_size"], dtype=dtype, param_dtype=param_dtype or dtype, value_head=value_head,
        num_value_bins=num_value_bins, num_kv_heads=hf.get("num_key_value_heads") or heads,
        head_dim=hf.get("head_dim") or hf["hidden_size"] // heads, norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
        tie_embeddings=bool(hf.get("tie_word_embeddings", tied_default)), **_rope_options(hf, family),
        **family.config_options, **_family_options(hf, family, max_length),
    )  # fmt: skip


def _family(hf: dict[str, Any]) -> _Family:
    archs = hf.get("architectures") or []
    if len(archs) != 1 or archs[0] not in _FAMILIES:
        raise ValueError(f"{CONFIG_FILE}: unknown architecture {archs!r}; expected one of {sorted(_FAMILIES)}")
    return _FAMILIES[archs[0]]


def _family_of(config: TransformerConfig, architecture: str | None) -> _Family:
    """The family whose fixed options are the config's (or the one named, checked against them)."""
    mine = {k: getattr(config, k) for k in _FAMILY_OPTIONS}
    if architecture is None:
        matches = [f for f in _FAMILIES.values() if f.config_options == mine]
        if not matches:
            raise ValueError(f"no Hugging Face family of {sorted(_FAMILIES)} has the options {mine}")
        return matches[0]
    family = _FAMILIES.get(architecture)
    if family is None:
        raise ValueError(f"unknown architecture {architecture!r}; expected one of {sorted(_FAMILIES)}")
    if family.config_options != mine:
        raise ValueError(f"{architecture} cannot hold this model: it needs {family.config_options}, got {mine}")
    return family


def config_to_hf(config: TransformerConfig, architecture: str | None = None) -> dict[str, Any]:
    """The Hugging Face ``config.json`` dict of a model that :func:`config_from_hf` maps back to `config`."""
    c = config
    if c.num_actions != c.vocab_size:
        raise ValueError(
            "a Hugging Face layout needs a policy over the whole vocabulary (num_actions == vocab_size); "
            f"got num_actions={c.num_actions}, vocab_size={c.vocab_size}"
        )
    family = _family_of(c, architecture)
    gemma3 = family.model_type == "gemma3_text"
    if not gemma3 and (c.local_layers or c.rope_linear_factor != 1):
        raise ValueError(f"{family.architecture} has no local_layers or rope_linear_factor (Gemma 3 options)")
    hf = dict(
        architectures=[family.architecture], model_type=family.model_type, vocab_size=c.vocab_size,
        hidden_size=c.d_model, intermediate_size=c.mlp_dim, num_hidden_layers=c.num_layers,
        num_attention_heads=c.num_heads, num_key_value_heads=c.num_kv_heads, head_dim=c.head_dim,
        hidden_act=family.activation, max_position_embeddings=c.max_length, rms_norm_eps=c.norm_eps,
        rope_theta=c.rope_base, tie_word_embeddings=c.tie_embeddings, attention_bias=False,
        torch_dtype=c.param_dtype, use_cache=True,
    )  # fmt: skip
    if family.model_type in _GEMMAS:
        q = int(c.query_scale) if float(c.query_scale).is_integer() else c.query_scale  # transformers wants an int
        hf.update(hidden_activation=family.activation, query_pre_attn_scalar=q, sliding_window=c.max_length,
                  attn_logit_softcapping=c.attn_softcap, final_logit_softcapping=c.logit_softcap)  # fmt: skip
    if gemma3:
        linear = dict(rope_type="linear", factor=c.rope_linear_factor) if c.rope_linear_factor != 1 else None
        hf.update(rope_local_base_freq=c.rope_local_base, rope_scaling=linear,
                  layer_types=[_LOCAL if i in c.local_layers else _GLOBAL for i in range(c.num_layers)])  # fmt: skip
    if c.rope_scaling is not None:
        factor, low, high, original = c.rope_scaling
        hf["rope_scaling"] = dict(rope_type="llama3", factor=factor, low_freq_factor=low, high_freq_factor=high,
                                  original_max_position_embeddings=int(original))  # fmt: skip
    return hf


# -- tensors -------------------------------------------------------------------------------------------
def _weight_files(path: str) -> dict[str, str]:
    """Tensor name -> safetensors file, from the sharded index or the single ``model.safetensors``."""
    index = os.path.join(path, INDEX_FILE)
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)["weight_map"]
        return {name: os.path.join(path, file) for name, file in weight_map.items()}
    single = os.path.join(path, WEIGHTS_FILE)
    if not os.path.exists(single):
        raise FileNotFoundError(f"{path}: expected {WEIGHTS_FILE} or {INDEX_FILE}")
    with safe_open(single, framework="numpy") as f:
        return {name: single for name in f.keys()}


def _read(files: dict[str, str], names: list[str]) -> dict[str, np.ndarray]:
    """The named tensors, each file opened once."""
    out = {}
    for file in sorted({files[n] for n in names}):
        with safe_open(file, framework="numpy") as f:
            out.update({n: f.get_tensor(n) for n in names if files[n] == file})
    return out


def _check_names(table, files: dict[str, str], tied: bool) -> list[str]:
    """The table's names, after checking the checkpoint has exactly them (an ignorable extra aside)."""
    want = [name for name, _, _ in table]
    missing = [n for n in want if n not in files]
    if missing:
        raise ValueError(f"checkpoint: missing tensor {missing[0]!r} ({len(missing)} missing in all)")
    ignorable = ("rotary_emb.inv_freq",)  # buffers some old checkpoints saved; recomputed here
    extra = sorted(n for n in set(files) - set(want) if not n.endswith(ignorable))
    if tied and extra == ["lm_head.weight"]:  # a tied checkpoint may store the shared matrix twice
        tensors = _read(files, ["lm_head.weight", "model.embed_tokens.weight"])
        if np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]):
            extra = []
    if extra:
        raise ValueError(f"checkpoint: unexpected tensor {extra[0]!r} ({len(extra)} extra in all) for this config")
    return want


def params_from_hf(tensors: dict[str, np.ndarray], config: TransformerConfig) -> dict[str, Any]:
    """Our params (numpy, ``config.param_dtype``) from Hugging Face tensors, without a value head.

    Raises ``ValueError`` naming the first tensor whose shape is not what `config` needs.
    """
    kinds, dtype = _kinds(config), _NP_DTYPES[config.param_dtype]
    params: dict[str, Any] = {}
    for name, path, kind in _table(config):
        shape, to_ours, _ = kinds[kind]
        w = tensors[name]
        if tuple(w.shape) != shape:
            raise ValueError(f"checkpoint: tensor {name!r} has shape {tuple(w.shape)}, expected {shape}")
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = np.ascontiguousarray(to_ours(w).astype(dtype))
    for i in range(config.num_layers):
        params[f"layer_{i}"] = _fuse(params[f"layer_{i}"], config)
    return params


def hf_tensors(params: dict[str, Any], config: TransformerConfig) -> dict[str, np.ndarray]:
    """Hugging Face name -> numpy tensor of our params (the value head left out)."""
    kinds = _kinds(config)
    split = {**params, **{f"layer_{i}": _split(params[f"layer_{i}"], config) for i in range(config.num_layers)}}
    out = {}
    for name, path, kind in _table(config):
        node = split
        for key in path:
            node = node[key]
        out[name] = np.ascontiguousarray(kinds[kind][2](np.asarray(node)))
    return out


# -- value head ----------------------------------------------------------------------------------------
def _value_head(path: str, config: TransformerConfig, seed: int) -> tuple[dict[str, np.ndarray], TransformerConfig]:
    """The saved value head if the directory has one (its width sets the head's kind), else a fresh one
    drawn like :class:`PolicyValueTransformer`'s init (normal(0.02) weights, zero bias)."""
    dtype = _NP_DTYPES[config.param_dtype]
    file = os.path.join(path, VALUE_HEAD_FILE)
    if os.path.exists(file):
        with safe_open(file, framework="numpy") as f:
            w, b = f.get_tensor("value_head.weight"), f.get_tensor("value_head.bias")
        if w.ndim != 2 or w.shape[1] != config.d_model or b.shape != w.shape[:1]:
            raise ValueError(
                f"{VALUE_HEAD_FILE}: expected weight [N, {config.d_model}] and bias [N], got {w.shape}, {b.shape}"
            )
        n = w.shape[0]
        kind = dict(value_head="scalar") if n == 1 else dict(value_head="categorical", num_value_bins=n)
        return {"value_head": w.T.astype(dtype), "value_bias": b.astype(dtype)}, dataclasses.replace(config, **kind)
    n = 1 if config.value_head == "scalar" else config.num_value_bins
    w = 0.02 * np.asarray(jax.random.normal(jax.random.key(seed), (config.d_model, n), np.float32))
    return {"value_head": w.astype(dtype), "value_bias": np.zeros((n,), dtype)}, config


def _read_hf_config(path: str) -> dict[str, Any]:
    if not os.path.exists(os.path.join(path, CONFIG_FILE)):
        raise FileNotFoundError(f"{path}: expected a Hugging Face model directory with {CONFIG_FILE}")
    with open(os.path.join(path, CONFIG_FILE)) as f:
        return json.load(f)


# -- public --------------------------------------------------------------------------------------------
def pretrained_config(
    path: str, *, dtype: str = "float32", param_dtype: str | None = None, max_length: int | None = None,
    value_head: str = "scalar", num_value_bins: int = 51,
) -> TransformerConfig:  # fmt: skip
    """The :class:`TransformerConfig` that :func:`load_pretrained` with the same arguments gives, read from
    ``config.json`` (and the value head's width, if saved) without reading the weights."""
    path = os.path.expanduser(path)
    config = config_from_hf(_read_hf_config(path), dtype=dtype, param_dtype=param_dtype, max_length=max_length,
                            value_head=value_head, num_value_bins=num_value_bins)  # fmt: skip
    return _value_head(path, config, 0)[1]


def load_pretrained(
    path: str, *, dtype: str = "float32", param_dtype: str | None = None, mesh: jax.sharding.Mesh | None = None,
    max_length: int | None = None, value_head: str = "scalar", num_value_bins: int = 51, seed: int = 0,
) -> tuple[PolicyValueTransformer, dict[str, Any]]:  # fmt: skip
    """A Hugging Face decoder (Llama 3, Qwen2/2.5, Qwen3, Gemma 2, Gemma 3) from a local directory as a
    policy-value model.

    Args:
      path: a directory with ``config.json`` and ``model.safetensors`` (or a sharded
        ``model.safetensors.index.json``); nothing is downloaded.
      dtype: the matmul input dtype (``"float32"``, ``"bfloat16"``, ``"float16"``).
      param_dtype: the storage dtype of the params (default: `dtype`); tensors are cast on load.
      mesh: place each param with the model's shardings on this mesh (:func:`param_shardings`);
        ``None``: on the default device.
      max_length: the model's ``max_length`` (longest sequence, KV cache size); default the
        checkpoint's ``max_position_embeddings``.
      value_head, num_value_bins: the kind of value head to add when the directory holds none.
      seed: draws the fresh value head.

    Returns:
      ``(model, params)``: ``model.apply(params, tokens [B, T])`` gives ``(logits [B, T, V], values [B, T])``.

    Raises:
      ValueError: an unknown architecture or unsupported option, a missing or extra tensor, or a tensor
        of the wrong shape, each naming what was expected.
    """
    path = os.path.expanduser(path)
    config = config_from_hf(_read_hf_config(path), dtype=dtype, param_dtype=param_dtype, max_length=max_length,
                            value_head=value_head, num_value_bins=num_value_bins)  # fmt: skip
    files = _weight_files(path)
    names = _check_names(_table(config), files, config.tie_embeddings)
    params = params_from_hf(_read(files, names), config)
    head, config = _value_head(path, config, seed)
    params.update(head)
    model = PolicyValueTransformer(config)
    if mesh is None:
        return model, jax.device_put(params)
    return model, jax.device_put(params, param_shardings(model, params, mesh))


def save_pretrained(
    params: dict[str, Any], config: TransformerConfig, path: str, *, architecture: str | None = None
) -> None:
    """Writes the policy in the Hugging Face layout: ``config.json``, ``model.safetensors`` (Hugging Face
    names and shapes, ``config.param_dtype``) and the value head apart in ``value_head.safetensors``.

    `architecture` defaults to the family whose fixed options the config has (``TransformerConfig``'s
    ``qk_norm``, ``qkv_bias``, Gemma's options...; Llama when none). :func:`load_pretrained` of the
    directory gives back the same config and bit-identical params. A model with LoRA adapters is written merged
    (:func:`~jaxrl_reason.models.lora.merge_lora`). Params are gathered to this host (one process).
    """
    params, config = merge_lora(params, config)  # LoRA adapters folded into the weights
    hf = config_to_hf(config, architecture)
    path = os.path.expanduser(path)
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, CONFIG_FILE), "w") as f:
        json.dump(hf, f, indent=2)
    save_file(hf_tensors(params, config), os.path.join(path, WEIGHTS_FILE), metadata={"format": "pt"})
    head = {
        "value_head.weight": np.ascontiguousarray(np.asarray(params["value_head"]).T),
        "value_head.bias": np.asarray(params["value_bias"]),
    }
    save_file(head, os.path.join(path, VALUE_HEAD_FILE), metadata={"format": "pt"})
