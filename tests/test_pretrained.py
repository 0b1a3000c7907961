"""Hugging Face checkpoints: tiny random Llama / Qwen2 / Qwen3 / Gemma 2 / Gemma 3 directories written here
with safetensors.numpy.

The reference is an independent numpy forward written from the Hugging Face model definitions
(modeling_llama / qwen2 / qwen3 / gemma2 / gemma3: RMSNorm, rotate-half RoPE with Llama-3 or linear scaling and
Gemma 3's per-layer-type theta, grouped-query attention by repeating K/V heads, SwiGLU/GeGLU, q/k/v biases,
per-head QK-norm, Gemma's (1 + w) norms and soft caps), in float64.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

import jaxrl_reason as jr
from jaxrl_reason.models import pretrained
from tests.hf_checkpoints import FAMILIES, write_checkpoint

TOL = 1e-4


# -- the reference: Hugging Face's definitions in numpy (float64) ------------------------------------
def _rms(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _inv_freq(cfg, dh, local=False):
    theta = cfg["rope_local_base_freq"] if local else cfg["rope_theta"]  # Gemma 3's sliding layers: their own
    inv_freq = 1.0 / (theta ** (np.arange(0, dh, 2, dtype=np.float64) / dh))
    rs = cfg.get("rope_scaling")
    if not rs or local:
        return inv_freq
    if rs["rope_type"] == "linear":  # transformers' _compute_linear_scaling_rope_parameters
        return inv_freq / rs["factor"]
    # transformers' _compute_llama3_parameters
    factor, low, high, old = (
        rs["factor"],
        rs["low_freq_factor"],
        rs["high_freq_factor"],
        rs["original_max_position_embeddings"],
    )
    low_freq_wavelen, high_freq_wavelen = old / low, old / high
    wavelen = 2 * np.pi / inv_freq
    inv_freq_llama = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (old / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * inv_freq_llama / factor + smooth * inv_freq_llama
    is_medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    return np.where(is_medium, smoothed, inv_freq_llama)


def _rotate_half(x):
    x1, x2 = x[..., : x.shape[-1] // 2], x[..., x.shape[-1] // 2 :]
    return np.concatenate([-x2, x1], axis=-1)


def _softcap(x, cap):
    return x if cap is None else np.tanh(x / cap) * cap


def _gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))


def reference_logits(t, cfg, ids):
    """logits [T, V] of one sequence `ids` [T]."""
    t = {k: v.astype(np.float64) for k, v in t.items()}
    d, h, g = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dh, eps, n = cfg.get("head_dim", d // h), cfg["rms_norm_eps"], len(ids)
    gemma = cfg["model_type"] in ("gemma2", "gemma3_text")  # Gemma2RMSNorm/Gemma3RMSNorm scale by (1 + w)
    norm = lambda x, name: _rms(x, 1 + t[name] if gemma else t[name], eps)  # noqa: E731
    types = cfg.get("layer_types") or ["full_attention"] * cfg["num_hidden_layers"]
    causal = np.tril(np.ones((n, n), bool))
    x = t["model.embed_tokens.weight"][ids] * (np.float32(d**0.5) if gemma else 1.0)
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        y = norm(x, p + "input_layernorm.weight")
        q, k, v = (y @ t[p + f"self_attn.{s}_proj.weight"].T + t.get(p + f"self_attn.{s}_proj.bias", 0.0)
                   for s in "qkv")  # fmt: skip
        q, k, v = q.reshape(n, h, dh), k.reshape(n, g, dh), v.reshape(n, g, dh)
        if p + "self_attn.q_norm.weight" in t:
            q, k = norm(q, p + "self_attn.q_norm.weight"), norm(k, p + "self_attn.k_norm.weight")
        freqs = np.arange(n)[:, None] * _inv_freq(cfg, dh, types[i] == "sliding_attention")[None]
        emb = np.concatenate([freqs, freqs], axis=-1)
        cos, sin = np.cos(emb)[:, None], np.sin(emb)[:, None]  # [T, 1, Dh]
        q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        k, v = np.repeat(k, h // g, axis=1), np.repeat(v, h // g, axis=1)  # repeat_kv
        scores = np.einsum("qhd,khd->hqk", q, k) * cfg.get("query_pre_attn_scalar", dh) ** -0.5
        scores = _softcap(scores, cfg.get("attn_logit_softcapping"))
        scores = np.where(causal, scores, -np.inf)
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        att = np.einsum("hqk,khd->qhd", probs, v).reshape(n, h * dh)
        att = att @ t[p + "self_attn.o_proj.weight"].T
        x = x + (norm(att, p + "post_attention_layernorm.weight") if gemma else att)
        y = norm(x, p + ("pre_feedforward_layernorm.weight" if gemma else "post_attention_layernorm.weight"))
        gate, up = y @ t[p + "mlp.gate_proj.weight"].T, y @ t[p + "mlp.up_proj.weight"].T
        act = _gelu_tanh(gate) if gemma else gate / (1 + np.exp(-gate))
        y = (act * up) @ t[p + "mlp.down_proj.weight"].T
        x = x + (norm(y, p + "post_feedforward_layernorm.weight") if gemma else y)
    x = norm(x, "model.norm.weight")
    logits = x @ t.get("lm_head.weight", t["model.embed_tokens.weight"]).T
    return _softcap(logits, cfg.get("final_logit_softcapping"))


# -- tests ---------------------------------------------------------------------------------------------
def _ids(cfg, b=2, n=10, seed=5):
    return np.random.default_rng(seed).integers(0, cfg["vocab_size"], (b, n)).astype(np.int32)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_logits_equal_the_reference_and_prefill_plus_decode_equals_the_full_forward(tmp_path, family):
    cfg = FAMILIES[family]
    tensors = write_checkpoint(tmp_path, cfg, seed=11)
    model, params = jr.load_pretrained(str(tmp_path))
    c = model.config
    gemma = family in ("gemma2", "gemma3")
    assert (c.mlp, c.qkv_bias, c.qk_norm, c.tie_embeddings, c.post_norms) == (
        "geglu" if gemma else "swiglu", cfg["model_type"] == "qwen2", family in ("qwen3", "gemma3"),
        cfg["tie_word_embeddings"], gemma,
    )  # fmt: skip
    assert (c.rope_scaling is not None) == (family == "llama")
    assert (c.local_layers, c.rope_linear_factor) == (((0, 2), 2.0) if family == "gemma3" else ((), 1.0))
    ids = _ids(cfg)
    logits, values = jax.jit(model.apply)(params, ids)
    assert logits.shape == (2, 10, cfg["vocab_size"]) and values.shape == (2, 10)
    assert bool(jnp.all(jnp.abs(values) <= 1))
    for b in range(2):
        ref = reference_logits(tensors, cfg, ids[b])
        np.testing.assert_allclose(np.asarray(logits[b]), ref, atol=TOL * np.abs(ref).max(), rtol=0)
    # the KV cache: prefill ragged prompts, decode the rest one token at a time
    lengths = jnp.array([3, 6], jnp.int32)
    prefill, decode = jax.jit(model.prefill), jax.jit(model.decode)
    _, _, cache = prefill(params, jnp.asarray(ids[:, :6]), lengths)
    rows = jnp.arange(2)
    for pos in range(3, 10):
        positions = jnp.maximum(lengths, pos)
        step, step_v, cache = decode(params, cache, jnp.asarray(ids)[rows, positions], positions)
        np.testing.assert_allclose(step, logits[rows, positions], atol=1e-5 * float(jnp.abs(logits).max()))
        np.testing.assert_allclose(step_v, values[rows, positions], atol=1e-5)


def test_a_sharded_index_loads_the_same_params_as_one_file(tmp_path):
    cfg = FAMILIES["qwen2"]
    write_checkpoint(tmp_path / "one", cfg, seed=3)
    write_checkpoint(tmp_path / "three", cfg, seed=3, shards=3)
    assert len(os.listdir(tmp_path / "three")) == 5  # config, index, 3 shards
    _, p1 = jr.load_pretrained(str(tmp_path / "one"))
    _, p3 = jr.load_pretrained(str(tmp_path / "three"))
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), p1, p3))


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_save_then_load_is_bit_exact_with_hugging_face_names_and_shapes(tmp_path, family):
    cfg = FAMILIES[family]
    tensors = write_checkpoint(tmp_path / "hf", cfg, seed=7)
    model, params = jr.load_pretrained(str(tmp_path / "hf"), value_head="categorical", num_value_bins=5)
    jr.save_pretrained(params, model.config, str(tmp_path / "out"))
    saved = load_file(str(tmp_path / "out" / "model.safetensors"))
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in tensors.items()}
    for name, w in tensors.items():  # our layout and back: exactly the checkpoint's tensors
        assert np.array_equal(saved[name], w), name
    head = load_file(str(tmp_path / "out" / "value_head.safetensors"))
    assert head["value_head.weight"].shape == (5, 32) and head["value_head.bias"].shape == (5,)
    with open(tmp_path / "out" / "config.json") as f:
        written = json.load(f)
    assert written["architectures"] == cfg["architectures"]
    model2, params2 = jr.load_pretrained(str(tmp_path / "out"))  # the value head kind comes from the file
    assert model2.config == model.config
    assert jax.tree.structure(params2) == jax.tree.structure(params)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), params, params2))


def test_bfloat16_load_stores_bfloat16_and_tracks_float32(tmp_path):
    cfg = FAMILIES["qwen3"]
    write_checkpoint(tmp_path, cfg, seed=2)
    m32, p32 = jr.load_pretrained(str(tmp_path))
    m16, p16 = jr.load_pretrained(str(tmp_path), dtype="bfloat16")
    assert {x.dtype for x in jax.tree.leaves(p16)} == {jnp.dtype(jnp.bfloat16)}
    ids = _ids(cfg)
    l32, _ = jax.jit(m32.apply)(p32, ids)
    l16, _ = jax.jit(m16.apply)(p16, ids)  # jitted: XLA's CPU runtime has no eager bf16 x bf16 -> f32 dot
    np.testing.assert_allclose(l16, l32, atol=0.05 * float(jnp.abs(l32).max()))
    assert float(jnp.abs(l16 - l32).max()) > 0


def test_params_are_placed_with_the_model_shardings_on_a_mesh(tmp_path):
    cfg = FAMILIES["llama"]
    write_checkpoint(tmp_path, cfg, seed=1)
    mesh = jr.make_mesh(data=2, fsdp=4)
    model, params = jr.load_pretrained(str(tmp_path), mesh=mesh)
    embed = params["embed"]  # [V=50, D=32]: "vocab" 50 % 4 != 0, so the "embed" axis is split
    assert embed.sharding.mesh.shape == mesh.shape
    assert embed.sharding.shard_shape(embed.shape) == (50, 8)
    _, host = jr.load_pretrained(str(tmp_path))
    np.testing.assert_array_equal(np.asarray(embed), np.asarray(host["embed"]))


def _edit(path, cfg=None, tensors=None):
    if cfg is not None:
        with open(os.path.join(path, "config.json"), "w") as f:
            json.dump(cfg, f)
    if tensors is not None:
        save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def test_bad_checkpoints_raise_one_clear_error_naming_the_tensor(tmp_path):
    cfg = FAMILIES["llama"]
    tensors = write_checkpoint(tmp_path, cfg, seed=0)
    _edit(tmp_path, cfg={**cfg, "architectures": ["GPT2LMHeadModel"]})
    with pytest.raises(ValueError, match="unknown architecture \\['GPT2LMHeadModel'\\]; expected one of"):
        jr.load_pretrained(str(tmp_path))
    _edit(tmp_path, cfg={**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(ValueError, match="rope scaling 'yarn' is not supported"):
        jr.load_pretrained(str(tmp_path))
    _edit(tmp_path, cfg=cfg, tensors={k: v for k, v in tensors.items() if k != "model.layers.1.mlp.up_proj.weight"})
    with pytest.raises(ValueError, match="missing tensor 'model.layers.1.mlp.up_proj.weight'"):
        jr.load_pretrained(str(tmp_path))
    _edit(tmp_path, tensors={**tensors, "model.layers.0.self_attn.q_proj.bias": np.zeros(32, np.float32)})
    with pytest.raises(ValueError, match="unexpected tensor 'model.layers.0.self_attn.q_proj.bias'"):
        jr.load_pretrained(str(tmp_path))
    _edit(tmp_path, tensors={**tensors, "model.layers.0.self_attn.k_proj.weight": np.zeros((32, 32), np.float32)})
    with pytest.raises(
        ValueError, match="'model.layers.0.self_attn.k_proj.weight' has shape \\(32, 32\\), expected \\(16, 32\\)"
    ):
        jr.load_pretrained(str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        os.remove(tmp_path / "model.safetensors")
        jr.load_pretrained(str(tmp_path))
    gelu = jr.TransformerConfig(num_actions=8, vocab_size=8)
    with pytest.raises(ValueError, match="no Hugging Face family .* has the options \\{'mlp': 'gelu'"):
        jr.save_pretrained({}, gelu, str(tmp_path / "x"))
    with pytest.raises(ValueError, match="num_actions == vocab_size"):
        pretrained.config_to_hf(jr.TransformerConfig(num_actions=4, vocab_size=8, mlp="swiglu"))
    with pytest.raises(ValueError, match="Qwen3ForCausalLM cannot hold this model"):
        pretrained.config_to_hf(jr.TransformerConfig(num_actions=8, vocab_size=8, mlp="swiglu"), "Qwen3ForCausalLM")
    gemma = FAMILIES["gemma2"]  # sliding windows are not computed: the length is capped at the window
    assert pretrained.config_from_hf(gemma).max_length == gemma["sliding_window"] == 16
    with pytest.raises(ValueError, match="sliding window is not implemented; expected <= 16, got 32"):
        pretrained.config_from_hf(gemma, max_length=32)


def test_gemma3_configs_old_and_new_give_the_same_layer_types_and_rotary_options():
    cfg = FAMILIES["gemma3"]
    old = pretrained.config_from_hf(cfg)
    assert (old.local_layers, old.rope_base, old.rope_local_base, old.rope_linear_factor) == ((0, 2), 1e6, 100.0, 2.0)
    assert old.max_length == cfg["sliding_window"] == 16  # the window is not computed: capped as for Gemma 2
    new = {k: v for k, v in cfg.items() if k not in ("rope_theta", "rope_local_base_freq", "rope_scaling")}
    new["rope_parameters"] = {  # transformers >= 5 writes the rotary options per layer type
        "full_attention": {"rope_type": "linear", "factor": 2.0, "rope_theta": 1e6},
        "sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
    }
    assert pretrained.config_from_hf(new) == old
    # no layer_types: every sliding_window_pattern-th layer (default 6) is global, as transformers does
    n12 = {k: v for k, v in cfg.items() if k != "layer_types"} | {"num_hidden_layers": 12}
    assert pretrained.config_from_hf(n12).local_layers == (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)
    n4 = {k: v for k, v in cfg.items() if k != "layer_types"} | {"num_hidden_layers": 4, "sliding_window_pattern": 2}
    assert pretrained.config_from_hf(n4).local_layers == (0, 2)
    # save -> config.json -> load keeps them
    assert pretrained.config_from_hf(json.loads(json.dumps(pretrained.config_to_hf(old)))) == old


def test_gemma3_options_the_model_does_not_compute_raise_clear_errors():
    cfg = FAMILIES["gemma3"]
    with pytest.raises(ValueError, match="layer_types: expected 3 of"):
        pretrained.config_from_hf({**cfg, "layer_types": ["sliding_attention", "chunked_attention", "full_attention"]})
    with pytest.raises(ValueError, match="Gemma 3 rope scaling \\('yarn', 'default'\\) is not supported"):
        pretrained.config_from_hf({**cfg, "rope_scaling": {"rope_type": "yarn", "factor": 2.0}})
    with pytest.raises(ValueError, match="use_bidirectional_attention is not supported"):
        pretrained.config_from_hf({**cfg, "use_bidirectional_attention": True})
    llama = jr.TransformerConfig(num_actions=8, vocab_size=8, mlp="swiglu", num_layers=2, local_layers=(0,))
    with pytest.raises(ValueError, match="LlamaForCausalLM has no local_layers"):
        pretrained.config_to_hf(llama)
    with pytest.raises(ValueError, match="local_layers: increasing layer indices in \\[0, 2\\)"):
        jr.TransformerConfig(num_actions=8, vocab_size=8, num_layers=2, local_layers=(2,))


def test_local_layers_rotate_with_their_own_base_and_nothing_else_changes():
    """A model whose every layer is local equals one whose global base is the local base (and no scaling)."""
    base = dict(num_actions=11, vocab_size=11, d_model=32, num_heads=2, num_layers=2, mlp_dim=32, max_length=12)
    local = jr.PolicyValueTransformer(jr.TransformerConfig(**base, local_layers=(0, 1), rope_local_base=50.0,
                                                           rope_linear_factor=3.0))  # fmt: skip
    plain = jr.PolicyValueTransformer(jr.TransformerConfig(**base, rope_base=50.0))
    other = jr.PolicyValueTransformer(jr.TransformerConfig(**base))
    params = plain.init(jax.random.key(0))
    ids = _ids({"vocab_size": 11}, n=12)
    a, b, c = (m.apply(params, ids)[0] for m in (local, plain, other))
    np.testing.assert_allclose(a, b, atol=1e-6)
    assert float(jnp.abs(a - c).max()) > 1e-3  # the base matters at these positions
