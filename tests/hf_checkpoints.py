"""Tiny random Hugging Face checkpoints (Llama, Qwen2, Qwen3, Gemma 2, Gemma 3 layouts) for the tests and for
scripts/make_hf_reference.py: numpy and safetensors only (the script runs it where jax is not installed).

Each tensor is drawn from ``numpy.random.default_rng(seed)`` in a fixed order, so a seed names a
checkpoint exactly (tests/data/hf_reference.npz stores logits of seeded checkpoints).
"""

import json
import os

import numpy as np
from safetensors.numpy import save_file

_BASE = dict(hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4, hidden_act="silu",
             max_position_embeddings=32, rms_norm_eps=1e-6, rope_theta=10000.0)  # fmt: skip
FAMILIES = {
    # GQA (2 K/V heads), Llama-3 rope scaling with all three frequency bands at head_dim 8, untied
    "llama": dict(
        _BASE,
        architectures=["LlamaForCausalLM"],
        model_type="llama",
        vocab_size=50,
        num_key_value_heads=2,
        rms_norm_eps=1e-5,
        max_position_embeddings=128,  # above the rope scaling's original 64, as in real Llama 3.1 configs
        tie_word_embeddings=False,
        rope_scaling=dict(
            rope_type="llama3",
            factor=4.0,
            low_freq_factor=1.0,
            high_freq_factor=4.0,
            original_max_position_embeddings=64,
        ),
    ),
    # q/k/v biases with GQA and tied embeddings (as Qwen2.5-0.5B)
    "qwen2": dict(
        _BASE,
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        vocab_size=50,
        num_key_value_heads=2,
        tie_word_embeddings=True,
        rope_theta=1e6,
    ),
    # multi-head (our fused qkv and qkv_bias), untied
    "qwen2_mha": dict(
        _BASE,
        architectures=["Qwen2ForCausalLM"],
        model_type="qwen2",
        vocab_size=50,
        num_key_value_heads=4,
        tie_word_embeddings=False,
    ),
    # head_dim 16 != 32 / 4, QK-norm, GQA, a vocabulary past the one-hot embedding (gather path)
    "qwen3": dict(
        _BASE,
        architectures=["Qwen3ForCausalLM"],
        model_type="qwen3",
        vocab_size=4100,
        num_key_value_heads=2,
        head_dim=16,
        tie_word_embeddings=False,
    ),
    # Gemma 2: (1 + w) norms, norms after attention and around the MLP, GeGLU, embedding scale, a query
    # scale apart from head_dim, soft-capped scores and logits (small caps, so that they bite), tied
    "gemma2": dict(
        _BASE,
        architectures=["Gemma2ForCausalLM"],
        model_type="gemma2",
        vocab_size=50,
        num_key_value_heads=2,
        head_dim=16,
        hidden_act="gelu_pytorch_tanh",
        hidden_activation="gelu_pytorch_tanh",
        query_pre_attn_scalar=24,
        attn_logit_softcapping=5.0,
        final_logit_softcapping=3.0,
        sliding_window=16,
        tie_word_embeddings=True,
    ),
}
# Gemma 3 (text): Gemma 2's layout plus (1 + w) QK-norm; local and global layers with their own rotary theta (a
# small local one, so that they differ), linear rope scaling on the global ones, multi-query attention, no soft
# caps (as released)
FAMILIES["gemma3"] = dict(
    {k: v for k, v in FAMILIES["gemma2"].items() if not k.endswith("_softcapping")},
    architectures=["Gemma3ForCausalLM"],
    model_type="gemma3_text",
    num_hidden_layers=3,
    num_key_value_heads=1,
    rope_theta=1e6,
    rope_local_base_freq=100.0,
    rope_scaling=dict(rope_type="linear", factor=2.0),
    layer_types=["sliding_attention", "full_attention", "sliding_attention"],
)


def _hf_shapes(cfg):
    d, h, m, v = cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"], cfg["vocab_size"]
    g, dh = cfg["num_key_value_heads"], cfg.get("head_dim", d // h)
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not cfg["tie_word_embeddings"]:
        shapes["lm_head.weight"] = (v, d)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes.update({p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
                       p + "self_attn.q_proj.weight": (h * dh, d), p + "self_attn.k_proj.weight": (g * dh, d),
                       p + "self_attn.v_proj.weight": (g * dh, d), p + "self_attn.o_proj.weight": (d, h * dh),
                       p + "mlp.gate_proj.weight": (m, d), p + "mlp.up_proj.weight": (m, d),
                       p + "mlp.down_proj.weight": (d, m)})  # fmt: skip
        if cfg["model_type"] in ("gemma2", "gemma3_text"):
            shapes.update({p + f"{x}_feedforward_layernorm.weight": (d,) for x in ("pre", "post")})
        if cfg["model_type"] == "qwen2":
            shapes.update({p + f"self_attn.{x}_proj.bias": (n * dh,) for x, n in (("q", h), ("k", g), ("v", g))})
        if cfg["model_type"] in ("qwen3", "gemma3_text"):
            shapes.update({p + "self_attn.q_norm.weight": (dh,), p + "self_attn.k_norm.weight": (dh,)})
    return shapes


def _random_tensors(cfg, seed):
    """Fan-in scaled weights, norms near 1, biases large enough to matter."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, s in _hf_shapes(cfg).items():
        if "bias" in name:
            w = rng.normal(0, 0.3, s)
        elif len(s) == 1:
            w = 1 + 0.3 * rng.normal(size=s)
        else:
            w = rng.normal(0, 1 / np.sqrt(s[-1]), s)
        out[name] = w.astype(np.float32)
    return out


def write_checkpoint(path, cfg, seed, *, shards=1):
    """A Hugging Face directory: config.json and model.safetensors (or `shards` files with an index)."""
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(cfg, f)
    tensors = _random_tensors(cfg, seed)
    if shards == 1:
        save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})
        return tensors
    names, weight_map = sorted(tensors), {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, os.path.join(path, file), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, file))
    with open(os.path.join(path, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    return tensors
