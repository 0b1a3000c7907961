"""Policy-value transformer: config checks, shapes, causality, KV cache == full forward, extend, axes."""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.models import two_hot, value_bins

A, V, L = 12, 16, 24
CFG = jr.TransformerConfig(num_actions=A, vocab_size=V, max_length=L, d_model=32, num_heads=4, num_layers=2, mlp_dim=64)
TOL = 1e-5


def random_params(model, seed=0):
    """Random params of the model's structure, drawn with numpy (no init compile; heads not near zero,
    so that a wrong mask or position shows in the outputs)."""
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(model.init, jax.random.key(0))
    return jax.tree.map(
        lambda s: jnp.asarray(
            rng.normal(0, 1 / np.sqrt(s.shape[0]), s.shape) if len(s.shape) > 1 else 1 + 0.3 * rng.normal(size=s.shape),
            s.dtype,
        ),
        shapes,
    )


@functools.cache
def _setup(value_head="scalar", num_kv_heads=None):
    model = jr.PolicyValueTransformer(dataclasses.replace(CFG, value_head=value_head, num_kv_heads=num_kv_heads))
    return model, random_params(model)


def _tokens(b, t, seed=1):
    return jnp.asarray(np.random.default_rng(seed).integers(0, V, (b, t)), jnp.int32)


@functools.cache
def _jitted(model):
    return (
        jax.jit(model.apply, static_argnames="return_value_logits"),
        jax.jit(model.prefill),
        jax.jit(model.decode),
        jax.jit(model.extend),
    )


# -- config -------------------------------------------------------------------------------------------
def test_config_validation_errors_are_clear():
    with pytest.raises(ValueError, match="d_model divisible by num_heads"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="vocab_size >= num_actions"):
        jr.TransformerConfig(num_actions=9, vocab_size=8)
    with pytest.raises(ValueError, match="even head_dim"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, d_model=12, num_heads=4)
    with pytest.raises(ValueError, match="value_head in"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, value_head="mse")
    with pytest.raises(ValueError, match="dtype in"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, dtype="int8")
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        jr.TransformerConfig.preset("huge", num_actions=4, vocab_size=8)
    with pytest.raises(ValueError, match="needs"):
        jr.TransformerConfig.preset("tiny")
    with pytest.raises(ValueError, match="num_heads divisible by num_kv_heads, got 4 % 3"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, d_model=32, num_heads=4, num_kv_heads=3)
    with pytest.raises(ValueError, match="num_kv_heads a positive int"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, num_kv_heads=0)
    # None means multi-head and is stored as num_heads: the two spellings are the same model
    assert jr.TransformerConfig(num_actions=4, vocab_size=8, num_heads=4).num_kv_heads == 4
    assert jr.TransformerConfig(num_actions=4, vocab_size=8) == jr.TransformerConfig(
        num_actions=4, vocab_size=8, num_kv_heads=4
    )


def test_presets_and_for_env():
    spec = jr.EnvSpec("x-v0", num_actions=30, vocab_size=40, max_length=64, max_prompt_length=20)
    cfg = jr.TransformerConfig.for_env(spec)
    assert (cfg.num_actions, cfg.vocab_size, cfg.max_length) == (30, 40, 64)
    n_tiny = jr.PolicyValueTransformer(cfg).num_params()
    assert 0.35e6 < n_tiny < 0.45e6, n_tiny
    n_small = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(spec, "small")).num_params()
    n_base = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(spec, "base", num_layers=4)).num_params()
    assert n_tiny < n_small < n_base
    assert jr.TransformerConfig.for_env(spec, d_model=64).d_model == 64
    # hashable: usable as a static argument
    assert hash(jr.PolicyValueTransformer(cfg)) == hash(jr.PolicyValueTransformer(cfg))


# -- forward ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("value_head", ["scalar", "categorical"])
def test_shapes_dtypes_and_value_heads(value_head):
    model, params = _setup(value_head)
    apply = _jitted(model)[0]
    logits, values, value_logits = apply(params, _tokens(3, 14), return_value_logits=True)
    assert logits.shape == (3, 14, A) and logits.dtype == jnp.float32
    assert values.shape == (3, 14) and values.dtype == jnp.float32
    assert bool(jnp.all(jnp.abs(values) <= 1.0)) and float(jnp.std(values)) > 0
    if value_head == "categorical":
        assert value_logits.shape == (3, 14, CFG.num_value_bins)
        np.testing.assert_allclose(jax.nn.softmax(value_logits) @ value_bins(CFG.num_value_bins), values, atol=1e-6)
    else:
        np.testing.assert_allclose(jnp.tanh(value_logits), values, atol=1e-6)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(params))


def test_two_hot_expectation_is_the_value():
    z = jnp.array([-1.0, -0.33, 0.0, 0.5, 0.999, 1.0, 2.0])
    probs = two_hot(z, 5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_allclose(probs @ value_bins(5), jnp.clip(z, -1, 1), atol=1e-6)
    np.testing.assert_allclose(probs[3], [0, 0, 0, 1, 0], atol=1e-6)  # 0.5 is a bin centre


def test_causality_later_tokens_never_change_earlier_outputs():
    model, params = _setup()
    apply = _jitted(model)[0]
    tokens = _tokens(3, 14)
    changed = tokens.at[:, 6:].set((tokens[:, 6:] + 3) % V)
    (l1, v1), (l2, v2) = apply(params, tokens), apply(params, changed)
    np.testing.assert_array_equal(l1[:, :6], l2[:, :6])
    np.testing.assert_array_equal(v1[:, :6], v2[:, :6])
    assert float(jnp.abs(l1[:, 6:] - l2[:, 6:]).max()) > 1e-3  # and the later ones do change


def test_left_padding_with_positions_and_mask_equals_unpadded():
    model, params = _setup()
    apply = _jitted(model)[0]
    tokens = _tokens(3, 14)
    pad = 8  # every row left-padded by 8 junk tokens: keep the first 6 real tokens
    padded = jnp.concatenate([jnp.full((3, pad), V - 1, jnp.int32), tokens[:, :6]], axis=1)
    positions = jnp.broadcast_to(jnp.maximum(jnp.arange(14) - pad, 0), (3, 14))
    mask = jnp.broadcast_to(jnp.arange(14) >= pad, (3, 14))
    l_ref, v_ref = apply(params, tokens)
    l_pad, v_pad = apply(params, padded, positions=positions, mask=mask)
    np.testing.assert_allclose(l_pad[:, pad:], l_ref[:, :6], atol=TOL)
    np.testing.assert_allclose(v_pad[:, pad:], v_ref[:, :6], atol=TOL)


def test_grouped_query_attention_equals_multi_head_with_repeated_kv_heads():
    """G K/V heads shared by H/G query heads each == multi-head attention whose K/V projections are those
    G heads repeated: the grouping (query head h reads K/V head h // (H/G)) and the params' use are right."""
    gqa, p_gqa = _setup(num_kv_heads=2)
    mha, p_mha = _setup()
    assert set(p_gqa["layer_0"]) - set(p_mha["layer_0"]) == {"q", "kv"}
    assert p_gqa["layer_0"]["kv"].shape == (CFG.d_model, 2, 2, CFG.head_dim)
    p_eq = jax.tree.map(lambda x: x, p_gqa)
    for i in range(CFG.num_layers):
        layer = dict(p_eq[f"layer_{i}"])
        q, kv = layer.pop("q"), layer.pop("kv")  # [D,H,Dh], [D,2,G,Dh]
        layer["qkv"] = jnp.concatenate([q[:, None], jnp.repeat(kv, 2, axis=2)], axis=1)  # [D,3,H,Dh]
        p_eq[f"layer_{i}"] = layer
    tokens = _tokens(3, 14)
    (lg, vg), (lm, vm) = _jitted(gqa)[0](p_gqa, tokens), _jitted(mha)[0](p_eq, tokens)
    np.testing.assert_allclose(lg, lm, atol=TOL)
    np.testing.assert_allclose(vg, vm, atol=TOL)
    # and the grouped model really has fewer params (K/V projections 2·D·G·Dh instead of 2·D·D per layer)
    assert mha.num_params() - gqa.num_params() == CFG.num_layers * 2 * CFG.d_model * (CFG.d_model - 2 * CFG.head_dim)


# -- KV cache -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("num_kv_heads", [None, 2, 1])
def test_prefill_then_decode_equals_full_forward_with_ragged_prefixes(num_kv_heads):
    model, params = _setup(num_kv_heads=num_kv_heads)
    c = model.config
    apply, prefill, decode, _ = _jitted(model)
    b, total = 3, 14
    seq = _tokens(b, total, seed=2)
    full_logits, full_values = apply(params, seq)
    lengths = jnp.array([2, 5, 9], jnp.int32)
    prompt_t = 9  # right-padded prompts, garbage after each row's length
    prompts = jnp.where(jnp.arange(prompt_t)[None] < lengths[:, None], seq[:, :prompt_t], V - 1)
    logits, values, cache = prefill(params, prompts, lengths)
    # per layer, in the layouts attention reads: K transposed [B, G, Dh, S] for grouped-query models
    grouped = c.num_kv_heads < c.num_heads
    k_shape = (b, c.num_kv_heads, c.head_dim, L) if grouped else (b, c.num_kv_heads, L, c.head_dim)
    assert len(cache.k) == len(cache.v) == c.num_layers
    assert all(k.shape == k_shape for k in cache.k)
    assert all(v.shape == (b, c.num_kv_heads, L, c.head_dim) for v in cache.v)
    for r in range(b):
        n = int(lengths[r])
        np.testing.assert_allclose(logits[r, :n], full_logits[r, :n], atol=TOL)
        np.testing.assert_allclose(values[r, :n], full_values[r, :n], atol=TOL)
    pos = lengths
    rows = jnp.arange(b)
    for _ in range(total - 2):
        p = jnp.minimum(pos, total - 1)  # rows that reached the end re-decode their last token
        step_logits, step_values, cache = decode(params, cache, seq[rows, p], p)
        np.testing.assert_allclose(step_logits, full_logits[rows, p], atol=TOL)
        np.testing.assert_allclose(step_values, full_values[rows, p], atol=TOL)
        np.testing.assert_array_equal(cache.lengths, p + 1)
        pos = pos + 1


@pytest.mark.parametrize("num_kv_heads", [None, 1])
def test_extend_with_prefix_and_path_segments_equals_full_forward(num_kv_heads):
    model, params = _setup(num_kv_heads=num_kv_heads)
    c = model.config
    apply, prefill, _, extend = _jitted(model)
    b, total = 3, 14
    seq = _tokens(b, total, seed=3)
    full_logits, full_values = apply(params, seq)
    # prefix: rows of different lengths, junk after each; the cache is sized max_length
    lengths = jnp.array([3, 5, 4], jnp.int32)
    _, _, cache = prefill(params, jnp.where(jnp.arange(5)[None] < lengths[:, None], seq[:, :5], 0), lengths)
    # masked junk in the slots after the prefix
    k_slots = (
        (lambda k: k.at[..., 5:].set(7.0)) if c.num_kv_heads < c.num_heads else (lambda k: k.at[:, :, 5:].set(7.0))
    )
    cache = cache.replace(k=tuple(k_slots(k) for k in cache.k), v=tuple(v.at[:, :, 5:].set(-7.0) for v in cache.v))
    # path: two tokens after each row's prefix, computed as their own segment
    rows = jnp.arange(b)[:, None]
    path_pos = lengths[:, None] + jnp.arange(2)[None]
    _, _, (pk, pv) = extend(params, seq[rows, path_pos], path_pos, (cache.segment(),))
    path_seg = (pk, pv, jnp.ones((b, 2), bool))
    # new tokens attend to prefix + path + causally to each other
    new_pos = lengths[:, None] + 2 + jnp.arange(3)[None]
    logits, values, (nk, nv) = extend(params, seq[rows, new_pos], new_pos, (cache.segment(), path_seg))
    assert nk.shape == (c.num_layers, b, 3, c.num_kv_heads, c.head_dim) and nv.shape == nk.shape
    np.testing.assert_allclose(logits, full_logits[rows, new_pos], atol=TOL)
    np.testing.assert_allclose(values, full_values[rows, new_pos], atol=TOL)
    # the cache's segment is a LayerSegment read in place; the same K/V stacked as extend returns
    # them, ([Lyr, B, S, G, Dh], converted inside the call), gives the same outputs
    seg = cache.segment()
    assert isinstance(seg, jr.models.LayerSegment) and seg.k is cache.k and seg.v is cache.v
    stacked_k = jnp.stack([k if c.num_kv_heads < c.num_heads else jnp.swapaxes(k, -1, -2) for k in cache.k])
    stacked = (jnp.moveaxis(stacked_k, -1, 2), jnp.swapaxes(jnp.stack(cache.v), 2, 3), seg.mask)
    l_st, v_st, _ = extend(params, seq[rows, new_pos], new_pos, (stacked, path_seg))
    np.testing.assert_allclose(l_st, logits, atol=1e-6)
    np.testing.assert_allclose(v_st, values, atol=1e-6)
    # and model.layer_segment converts the stacked form back to the cache's layouts exactly
    back = model.layer_segment(*stacked)
    for a, b_ in zip((*back.k, *back.v), (*cache.k, *cache.v), strict=True):
        np.testing.assert_array_equal(a, b_)
    # a masked-out path segment is the same as no path segment only if the mask really hides it
    hidden = (pk, pv, jnp.zeros((b, 2), bool))
    l_hidden, _, _ = extend(params, seq[rows, new_pos], new_pos, (cache.segment(), hidden))
    assert float(jnp.abs(l_hidden - logits).max()) > 1e-4


def test_bad_inputs_raise_value_errors():
    model, params = _setup()
    with pytest.raises(ValueError, match=r"expected shape \[B, T\]"):
        model.apply(params, jnp.zeros((5,), jnp.int32))
    with pytest.raises(ValueError, match="T <= max_length"):
        model.apply(params, jnp.zeros((1, L + 1), jnp.int32))
    with pytest.raises(ValueError, match="positions: expected shape"):
        model.apply(params, jnp.zeros((2, 3), jnp.int32), positions=jnp.zeros((3,), jnp.int32))
    k = jnp.zeros((CFG.num_layers, 2, 4, CFG.num_heads, CFG.head_dim + 2))
    with pytest.raises(ValueError, match=r"context\[0\]: expected k, v"):
        model.extend(params, jnp.zeros((2, 1), jnp.int32), jnp.zeros((2, 1), jnp.int32), [(k, k, jnp.ones((2, 4)))])
    bad = jr.models.LayerSegment.from_kv(k, k, jnp.ones((2, 4), bool), k_transposed=False)  # head_dim off by 2
    with pytest.raises(ValueError, match=r"context\[0\]: expected a LayerSegment of 2 layers"):
        model.extend(params, jnp.zeros((2, 1), jnp.int32), jnp.zeros((2, 1), jnp.int32), [bad])
    short = bad.replace(k=bad.k[:1], v=bad.v[:1])
    with pytest.raises(ValueError, match="got 1 layers"):
        model.extend(params, jnp.zeros((2, 1), jnp.int32), jnp.zeros((2, 1), jnp.int32), [short])
    # a grouped-query model given a multi-head cache names the K/V head count it expects
    mqa, mqa_params = _setup(num_kv_heads=1)
    full_heads = jnp.zeros((CFG.num_layers, 2, 4, CFG.num_heads, CFG.head_dim))
    with pytest.raises(ValueError, match=r"G=1, Dh=8\] and mask \[B, S\]; got k \(2, 2, 4, 4, 8\)"):
        mqa.extend(
            mqa_params,
            jnp.zeros((2, 1), jnp.int32),
            jnp.zeros((2, 1), jnp.int32),
            [(full_heads, full_heads, jnp.ones((2, 4)))],
        )
    with pytest.raises(ValueError, match="lengths: expected shape"):
        model.prefill(params, jnp.zeros((2, 3), jnp.int32), jnp.zeros((3,), jnp.int32))
    with pytest.raises(ValueError, match="expected a TransformerConfig"):
        jr.PolicyValueTransformer({"d_model": 3})


# -- sharding metadata --------------------------------------------------------------------------------
@pytest.mark.parametrize("num_kv_heads", [None, 2])
def test_every_param_has_logical_axes_of_matching_rank(num_kv_heads):
    model, params = _setup(num_kv_heads=num_kv_heads)
    axes = model.logical_axes()
    assert jax.tree.structure(params) == jax.tree.structure(axes, is_leaf=lambda x: isinstance(x, jax.P))
    names = set()
    for p, spec in zip(jax.tree.leaves(params), jax.tree.leaves(axes, is_leaf=lambda x: isinstance(x, jax.P)),
                       strict=True):  # fmt: skip
        assert isinstance(spec, jax.P) and len(spec) == p.ndim
        names.update(n for n in spec if n is not None)
    assert names == {"vocab", "embed", "heads", "kv", "mlp"}
    # the axes shard the params over a real mesh (embed -> 'model' on 2 devices)
    mesh = jax.make_mesh((4, 2), ("data", "model"))
    rules = {"embed": "model"}
    shardings = jax.tree.map(
        lambda s: jax.NamedSharding(mesh, jax.P(*(rules.get(n) for n in s))),
        axes,
        is_leaf=lambda x: isinstance(x, jax.P),
    )
    sharded = jax.device_put(params, shardings)
    assert sharded["embed"].sharding.shard_shape(sharded["embed"].shape) == (V, CFG.d_model // 2)


def test_bfloat16_matmuls_track_float32_and_decode_matches_its_own_forward():
    model, params = _setup()
    bf16 = jr.PolicyValueTransformer(dataclasses.replace(CFG, dtype="bfloat16"))
    seq = _tokens(3, 14)
    l32, v32 = _jitted(model)[0](params, seq)
    apply, prefill, decode, _ = _jitted(bf16)
    l16, v16 = apply(params, seq)
    assert l16.dtype == jnp.float32 and v16.dtype == jnp.float32
    np.testing.assert_allclose(l16, l32, atol=0.1 * float(jnp.abs(l32).max()))
    assert float(jnp.abs(l16 - l32).max()) > 0  # the bf16 path really rounds
    lengths = jnp.array([2, 5, 9], jnp.int32)
    _, _, cache = prefill(params, seq[:, :9], lengths)
    assert all(k.dtype == jnp.bfloat16 for k in (*cache.k, *cache.v))
    rows = jnp.arange(3)
    step_logits, _, _ = decode(params, cache, seq[rows, lengths], lengths)
    np.testing.assert_allclose(step_logits, l16[rows, lengths], atol=0.05 * float(jnp.abs(l16).max()))


# -- decoder-family options (numerical equivalence: tests/test_pretrained.py) -------------------------
FAMILY_OPTIONS = dict(num_kv_heads=2, head_dim=16, mlp="swiglu", qkv_bias=True, qk_norm=True, tie_embeddings=True,
                      norm_eps=1e-5, rope_scaling=(4.0, 1.0, 4.0, 64))  # fmt: skip


GEMMA2_OPTIONS = dict(num_kv_heads=2, head_dim=16, mlp="geglu", embed_scale=True, norm_unit_offset=True,
                      post_norms=True, query_scale=24.0, attn_softcap=5.0, logit_softcap=3.0,
                      tie_embeddings=True)  # fmt: skip


def test_family_options_are_checked_and_survive_a_json_round_trip():
    with pytest.raises(ValueError, match="mlp in"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, mlp="relu")
    with pytest.raises(ValueError, match="norm_eps > 0"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, norm_eps=0.0)
    with pytest.raises(ValueError, match="rope_scaling of 4 numbers"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, rope_scaling=(2.0, 1.0))
    with pytest.raises(ValueError, match="factor >= 1"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, rope_scaling=(0.5, 1.0, 4.0, 64))
    with pytest.raises(ValueError, match="even head_dim"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, head_dim=7)
    # an explicit head_dim frees d_model from divisibility (Qwen3: H·Dh != D)
    c = jr.TransformerConfig(num_actions=4, vocab_size=8, d_model=30, num_heads=4, head_dim=8)
    assert c.head_dim == 8
    assert jr.TransformerConfig(num_actions=4, vocab_size=8, d_model=32).head_dim == 8  # default: D / H
    with pytest.raises(ValueError, match="attn_softcap None or > 0"):
        jr.TransformerConfig(num_actions=4, vocab_size=8, attn_softcap=0.0)
    for options in (FAMILY_OPTIONS, GEMMA2_OPTIONS):
        full = dataclasses.replace(CFG, **options)
        saved = json.loads(json.dumps(dataclasses.asdict(full)))  # how runs store a model config
        assert jr.TransformerConfig(**saved) == full


def test_gemma2_options_init_to_identity_norms_and_cap_the_logits():
    model = jr.PolicyValueTransformer(dataclasses.replace(CFG, **GEMMA2_OPTIONS))
    params = jax.jit(model.init)(jax.random.key(0))
    layer = params["layer_0"]
    for name in ("attn_norm", "attn_post_norm", "mlp_norm", "mlp_post_norm"):  # (1 + w) norms start at w = 0
        np.testing.assert_array_equal(layer[name], np.zeros(32, np.float32))
    axes = model.logical_axes()
    assert axes["layer_0"]["attn_post_norm"] == jax.P("embed") and axes["layer_0"]["mlp_gate"] == jax.P("embed", "mlp")
    big = {**params, "embed": params["embed"] * 100.0}
    logits, _ = jax.jit(model.apply)(big, _tokens(2, 6))
    assert float(jnp.abs(logits).max()) <= 3.0  # logit_softcap


def test_family_option_params_have_logical_axes_and_the_tied_head_reads_the_embedding():
    model = jr.PolicyValueTransformer(dataclasses.replace(CFG, **FAMILY_OPTIONS))
    params = random_params(model)
    assert "policy_head" not in params
    layer = params["layer_0"]
    assert {k: v.shape for k, v in layer.items() if k in ("q", "kv", "q_bias", "kv_bias", "q_norm", "mlp_gate")} == {
        "q": (32, 4, 16), "kv": (32, 2, 2, 16), "q_bias": (4, 16), "kv_bias": (2, 2, 16), "q_norm": (16,),
        "mlp_gate": (32, 64),
    }  # fmt: skip
    axes = model.logical_axes()
    is_spec = lambda x: isinstance(x, jax.P)  # noqa: E731
    assert jax.tree.structure(params) == jax.tree.structure(axes, is_leaf=is_spec)
    for p, spec in zip(jax.tree.leaves(params), jax.tree.leaves(axes, is_leaf=is_spec), strict=True):
        assert len(spec) == p.ndim
    # tied: logits are the final features against the first A embedding rows (inputs avoid rows 0 and V-1)
    seq = jnp.clip(_tokens(2, 6), 1, V - 2)
    apply = jax.jit(model.apply)  # one compile for the three calls
    logits, _ = apply(params, seq)
    assert logits.shape == (2, 6, A)
    past_actions = {**params, "embed": params["embed"].at[V - 1].add(1.0)}
    np.testing.assert_array_equal(apply(past_actions, seq)[0], logits)
    action_0 = apply({**params, "embed": params["embed"].at[0].add(1.0)}, seq)[0]
    np.testing.assert_array_equal(action_0[..., 1:], logits[..., 1:])
    assert float(jnp.abs(action_0[..., 0] - logits[..., 0]).min()) > 0
