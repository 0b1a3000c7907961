"""The policy-value transformer: a decoder-only, pre-norm, rotary-position Flax model.

One network reads a token sequence and gives, at every position ``t``, the policy (logits over the
``A`` actions) and the value of the state whose last token is ``tokens[t]``. Params are a plain pytree
(unboxed); every method is pure; the model object holds only its config, so it is hashable and can be
closed over or passed as a static argument.

Shape legend: ``B`` batch, ``T`` new tokens, ``S`` cached/context tokens, ``A`` actions,
``Lyr`` layers, ``H`` heads, ``Dh`` head dim, ``D`` model width.

Attention is written over *segments*: the ``T`` new tokens attend causally to each other and to every
``(k, v, mask)`` segment of a context (a KV cache, a search's shared prefix, a path's K/V). The full
forward (:meth:`PolicyValueTransformer.apply`), :meth:`~PolicyValueTransformer.prefill`,
:meth:`~PolicyValueTransformer.decode` and :meth:`~PolicyValueTransformer.extend` are all that one
computation with different contexts, so they agree to float rounding (tested).

Parameters carry logical axis names (``vocab``, ``embed``, ``heads``, ``kv``, ``mlp``; ``None`` for
small axes that are never sharded); :meth:`PolicyValueTransformer.logical_axes` returns them as a pytree
of ``PartitionSpec`` matching the params.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_reason.models.lora import DEFAULT_ALPHA as DEFAULT_LORA_ALPHA
from jaxrl_reason.models.lora import DEFAULT_TARGETS as DEFAULT_LORA_TARGETS
from jaxrl_reason.models.lora import TARGETS as LORA_TARGETS
from jaxrl_reason.models.lora import adapt
from jaxrl_reason.types import Array, EnvSpec, Params, PRNGKey

_DTYPES = ("float32", "bfloat16", "float16")
_VALUE_HEADS = ("scalar", "categorical")
_MLPS = ("gelu", "swiglu", "geglu")
_ONE_HOT_MAX_VOCAB = 4096  # embed by one-hot matmul up to this vocabulary size, by gather above
_NEG = -1e30  # finite "minus infinity": a row with every key masked gets a uniform softmax, not NaN

# Width, heads, layers, MLP width of the presets (parameter counts for a ~40-token vocabulary).
_PRESETS: dict[str, dict[str, int]] = {
    "tiny": dict(d_model=128, num_heads=4, num_layers=2, mlp_dim=512),  # ~0.41 M params
    "small": dict(d_model=256, num_heads=8, num_layers=4, mlp_dim=1024),  # ~3.2 M params
    "base": dict(d_model=512, num_heads=8, num_layers=8, mlp_dim=2048),  # ~25 M params
}


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Static hyper-parameters of :class:`PolicyValueTransformer` (hashable).

    ``dtype`` is the matmul input dtype (accumulation is always float32; norms, softmax, the residual
    stream and the outputs stay float32); ``param_dtype`` the storage dtype of the params.
    ``value_head``: ``"scalar"`` (tanh of a linear read-out) or ``"categorical"`` (a softmax over
    ``num_value_bins`` evenly spaced bins on [-1, 1] whose expectation is the value).
    ``num_kv_heads``: key/value heads for grouped-query attention (``num_heads`` must be a multiple;
    ``1`` is multi-query attention); ``None`` means ``num_heads`` (plain multi-head attention) and is
    stored as that number. Fewer K/V heads shrink the KV cache and the bytes a search reads from its
    shared prefix per simulation by ``num_heads / num_kv_heads``.

    Options that cover the pretrained decoder families (Llama 3, Qwen2/2.5, Qwen3; the defaults are
    today's model): ``head_dim`` (``None``: ``d_model // num_heads``, stored as that number; Qwen3 uses
    a wider one), ``mlp`` (``"gelu"``: ``out(gelu(in(x)))``; ``"swiglu"``: ``out(silu(gate(x)) *
    in(x))``), ``norm_eps`` (RMSNorm epsilon), ``qkv_bias`` (biases on the query/key/value
    projections: Qwen2), ``qk_norm`` (an RMSNorm over each head of the queries and keys before the
    rotation: Qwen3), ``tie_embeddings`` (the policy head is the embedding matrix's first
    ``num_actions`` rows, transposed: no ``policy_head`` param) and ``rope_scaling`` (Llama-3 style
    frequency scaling ``(factor, low_freq_factor, high_freq_factor, original_max_position_embeddings)``;
    ``rope_base`` is the rotary theta).

    Gemma 2's options: ``mlp="geglu"`` (``out(gelu_tanh(gate(x)) * in(x))``), ``embed_scale`` (the
    embedding times ``sqrt(d_model)``), ``norm_unit_offset`` (every RMSNorm scales by ``1 + w``; its
    params start at 0), ``post_norms`` (an RMSNorm on the output of attention and of the MLP before
    each is added to the residual stream), ``query_scale`` (scores scaled by ``query_scale**-0.5``
    instead of ``head_dim**-0.5``), ``attn_softcap`` and ``logit_softcap`` (``cap * tanh(x / cap)`` on
    the attention scores and on the policy logits).

    Gemma 3's options (with Gemma 2's, and ``qk_norm``): ``local_layers`` (the indices of the layers Gemma 3
    runs with sliding-window attention; here they differ from the others only by their rotary base
    ``rope_local_base``: the window itself is not applied, so a model's ``max_length`` must fit in it, and
    :func:`~jaxrl_reason.models.pretrained.load_pretrained` caps it there) and ``rope_linear_factor`` (linear
    RoPE scaling: the other layers' rotary frequencies divided by it; 1 is none).

    LoRA (:mod:`jaxrl_reason.models.lora`): ``lora_rank`` > 0 adds low-rank adapters ``A [in, r]``, ``B [r, out]``
    (B zero at init) to the projections named in ``lora_targets``; each layer computes with
    ``W + (lora_alpha / lora_rank) · A·B``.
    """

    num_actions: int
    vocab_size: int
    max_length: int = 128
    d_model: int = 128
    num_heads: int = 4
    num_layers: int = 2
    mlp_dim: int = 512
    dtype: str = "float32"
    param_dtype: str = "float32"
    value_head: str = "scalar"
    num_value_bins: int = 51
    rope_base: float = 10_000.0
    num_kv_heads: int | None = None
    head_dim: int | None = None
    mlp: str = "gelu"
    norm_eps: float = 1e-6
    qkv_bias: bool = False
    qk_norm: bool = False
    tie_embeddings: bool = False
    rope_scaling: tuple[float, float, float, float] | None = None
    embed_scale: bool = False
    norm_unit_offset: bool = False
    post_norms: bool = False
    query_scale: float | None = None
    attn_softcap: float | None = None
    logit_softcap: float | None = None
    local_layers: tuple[int, ...] = ()
    rope_local_base: float = 10_000.0
    rope_linear_factor: float = 1.0
    lora_rank: int = 0
    lora_alpha: float = DEFAULT_LORA_ALPHA
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS

    def __post_init__(self):
        def need(ok, what):
            if not ok:
                raise ValueError(f"TransformerConfig: expected {what}; got {self}")

        if self.num_kv_heads is None:  # frozen: normalise so that equal models compare equal
            object.__setattr__(self, "num_kv_heads", self.num_heads)
        if self.head_dim is None and isinstance(self.num_heads, int) and self.num_heads >= 1:
            need(
                self.d_model % self.num_heads == 0,
                f"d_model divisible by num_heads, got {self.d_model} % {self.num_heads} != 0",
            )
            object.__setattr__(self, "head_dim", self.d_model // self.num_heads)
        if self.rope_scaling is not None:  # a JSON round trip gives a list
            need(len(self.rope_scaling) == 4, f"rope_scaling of 4 numbers, got {self.rope_scaling!r}")
            object.__setattr__(self, "rope_scaling", tuple(float(x) for x in self.rope_scaling))
        object.__setattr__(self, "lora_targets", tuple(self.lora_targets))
        object.__setattr__(self, "local_layers", tuple(self.local_layers))

        positive = (
            *("num_actions", "vocab_size", "max_length", "d_model", "num_heads", "num_kv_heads", "num_layers"),
            "head_dim",
        )
        for name in (*positive, "mlp_dim"):
            v = getattr(self, name)
            need(isinstance(v, int) and v >= 1, f"{name} a positive int (got {v!r})")
        need(
            self.vocab_size >= self.num_actions,
            f"vocab_size >= num_actions (the token of action a is a), got {self.vocab_size} < {self.num_actions}",
        )
        need(
            self.num_heads % self.num_kv_heads == 0,
            f"num_heads divisible by num_kv_heads, got {self.num_heads} % {self.num_kv_heads} != 0",
        )
        need(self.head_dim % 2 == 0, f"an even head_dim for rotary embeddings, got {self.head_dim}")
        need(self.dtype in _DTYPES, f"dtype in {_DTYPES}, got {self.dtype!r}")
        need(self.param_dtype in _DTYPES, f"param_dtype in {_DTYPES}, got {self.param_dtype!r}")
        need(self.value_head in _VALUE_HEADS, f"value_head in {_VALUE_HEADS}, got {self.value_head!r}")
        need(self.num_value_bins >= 2, f"num_value_bins >= 2, got {self.num_value_bins}")
        need(self.rope_base > 1, f"rope_base > 1, got {self.rope_base}")
        need(self.mlp in _MLPS, f"mlp in {_MLPS}, got {self.mlp!r}")
        need(self.norm_eps > 0, f"norm_eps > 0, got {self.norm_eps}")
        for name in ("query_scale", "attn_softcap", "logit_softcap"):
            v = getattr(self, name)
            need(v is None or v > 0, f"{name} None or > 0, got {v!r}")
        need(
            list(self.local_layers) == sorted(set(self.local_layers))
            and all(isinstance(i, int) and 0 <= i < self.num_layers for i in self.local_layers),
            f"local_layers: increasing layer indices in [0, {self.num_layers}), got {self.local_layers}",
        )
        need(self.rope_local_base > 1, f"rope_local_base > 1, got {self.rope_local_base}")
        need(self.rope_linear_factor >= 1, f"rope_linear_factor >= 1, got {self.rope_linear_factor}")
        need(isinstance(self.lora_rank, int) and self.lora_rank >= 0, f"lora_rank >= 0, got {self.lora_rank!r}")
        need(self.lora_alpha > 0, f"lora_alpha > 0, got {self.lora_alpha}")
        unknown = sorted(set(self.lora_targets) - set(LORA_TARGETS))
        need(not unknown, f"lora_targets among {tuple(LORA_TARGETS)}, got unknown {unknown}")
        if self.rope_scaling is not None:
            factor, low, high, original = self.rope_scaling
            need(
                factor >= 1 and high > low > 0 and original >= 1,
                f"rope_scaling = (factor >= 1, low, high > low > 0, original >= 1), got {self.rope_scaling}",
            )

    @classmethod
    def preset(cls, name: str, **overrides) -> TransformerConfig:
        """A named size (``"tiny"`` ~0.4 M params, ``"small"`` ~3 M, ``"base"`` ~25 M) with overrides.

        ``num_actions`` and ``vocab_size`` must be given (or use :meth:`for_env`).
        """
        if name not in _PRESETS:
            raise ValueError(f"unknown preset {name!r}; expected one of {sorted(_PRESETS)}")
        missing = [k for k in ("num_actions", "vocab_size") if k not in overrides]
        if missing:
            raise ValueError(f"preset {name!r} needs {missing} (or use TransformerConfig.for_env(spec))")
        return cls(**{**_PRESETS[name], **overrides})

    @classmethod
    def for_env(cls, spec: EnvSpec, preset: str = "tiny", **overrides) -> TransformerConfig:
        """A preset sized for an env: sets ``num_actions``, ``vocab_size`` and ``max_length`` from `spec`."""
        sizes = dict(num_actions=spec.num_actions, vocab_size=spec.vocab_size, max_length=spec.max_length)
        return cls.preset(preset, **{**sizes, **overrides})


@struct.dataclass
class KVCache:
    """Keys and values of every layer for ``max_length`` slots per row, in the layouts attention reads.

    Slot ``j`` of row ``b`` holds the K/V of the token at position ``j``; ``lengths[b]`` counts the
    slots written so far (prefill sets it to the prompt lengths, decode to ``position + 1``).
    ``k``/``v`` are tuples with one array per layer (see :class:`LayerSegment` for the layouts), so a
    decoding step or an MCTS search reads them in place: no per-call split or transpose of the cache.
    """

    k: tuple[Array, ...]  # per layer [B, G, S, Dh], or [B, G, Dh, S] for grouped-query models (G = num_kv_heads)
    v: tuple[Array, ...]  # per layer [B, G, S, Dh]
    lengths: Array  # [B] int32

    @property
    def batch_size(self) -> int:
        return self.v[0].shape[0]

    @property
    def max_length(self) -> int:
        return self.v[0].shape[2]

    def segment(self, lengths: Array | None = None) -> LayerSegment:
        """The cache as a context segment for :meth:`PolicyValueTransformer.extend` (no copy).

        ``mask[b, j] = j < lengths[b]`` (default: the cache's own ``lengths``).
        """
        lengths = self.lengths if lengths is None else lengths
        mask = jnp.arange(self.max_length)[None, :] < jnp.asarray(lengths)[:, None]
        return LayerSegment(k=self.k, v=self.v, mask=mask)


# -- network ------------------------------------------------------------------------------------------
def _param(module: nn.Module, name: str, init, shape: tuple[int, ...], names: tuple[str | None, ...], dtype):
    return module.param(name, nn.with_logical_partitioning(init, names), shape, dtype)


def _mm(eq: str, x: Array, w: Array, dtype) -> Array:
    """Einsum with inputs cast to the compute dtype and float32 accumulation/output."""
    return jnp.einsum(eq, x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _norm(x: Array, scale: Array, eps: float, unit_offset: bool = False) -> Array:
    """RMSNorm over the last axis, in float32; the scale is ``1 + scale`` with `unit_offset` (Gemma)."""
    x = x * jax.lax.rsqrt(jnp.mean(jnp.square(x), axis=-1, keepdims=True) + eps)
    return x * (1.0 + scale.astype(jnp.float32) if unit_offset else scale.astype(jnp.float32))


def _softcap(x: Array, cap: float | None) -> Array:
    return x if cap is None else cap * jnp.tanh(x / cap)


def rope_frequencies(config: TransformerConfig, *, local: bool = False) -> Array:
    """[head_dim/2] f32 inverse frequencies of the rotary embedding: ``rope_base ** (-i / (Dh/2))``,
    divided by ``rope_linear_factor``, rescaled Llama-3 style when ``config.rope_scaling`` is set (low
    frequencies divided by ``factor``, high ones kept, a smooth blend between). The `local` layers'
    (``config.local_layers``, Gemma 3) are ``rope_local_base ** (-i / (Dh/2))``, unscaled."""
    half = config.head_dim // 2
    exponents = -jnp.arange(half, dtype=jnp.float32) / half
    if local:
        return config.rope_local_base**exponents
    inv_freq = config.rope_base**exponents
    if config.rope_linear_factor != 1:
        inv_freq = inv_freq / config.rope_linear_factor
    if config.rope_scaling is None:
        return inv_freq
    factor, low, high, original = config.rope_scaling
    wavelen = 2 * math.pi / inv_freq
    scaled = jnp.where(wavelen > original / low, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    blended = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= original / high) & (wavelen <= original / low)
    return jnp.where(medium, blended, scaled)


def _rotation(positions: Array, inv_freq: Array) -> tuple[Array, Array]:
    """``(sin, cos)`` ``[B,T,1,1,Dh/2]`` of the rotary angles ``positions [B,T] x inv_freq [Dh/2]``."""
    angles = positions.astype(jnp.float32)[..., None] * inv_freq  # [B,T,Dh/2]
    return jnp.sin(angles)[:, :, None, None], jnp.cos(angles)[:, :, None, None]


def _rotate(x: Array, sin: Array, cos: Array) -> Array:
    """Rotary embedding of ``x [..., T, ..., Dh]`` with ``sin/cos`` broadcastable to ``[..., Dh/2]``."""
    x1, x2 = jnp.split(x, 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


def _attend(
    q: Array, segments: Sequence[tuple[Array, Array, Array]], dtype, k_transposed: bool, softcap: float | None = None
) -> Array:
    """Softmax attention of ``q [B,T,H,Dh]`` over the union of segments ``(k, v, mask [B|1,T|1,S])``.

    Segments come in the layouts attention reads (:func:`_attention_layout`): ``v [B,G,S,Dh]`` with
    ``G`` K/V heads, each shared by ``H/G`` consecutive query heads (grouped-query attention; ``G == H``
    is multi-head), and ``k`` like ``v``, or ``[B,G,Dh,S]`` when `k_transposed` (grouped-query models).
    Scores of all segments share one softmax; no K/V is concatenated (a cache is read in place).

    One query per row with grouped heads (a search or decoding step of a GQA/MQA model) reads the
    transposed K as it is: ``[H/G, Dh] x [Dh, S]`` dots per row and K/V head, which XLA's CPU backend
    runs fastest with K stored that way (measured: docs/BENCHMARKS.md, "Session 4"). Several queries
    (training, prefill) swap it back to ``[S, Dh]``: for the in-call segment the two transposes cancel,
    so a training step runs the same dots as a multi-head model's. `softcap` caps the scores
    (``cap * tanh(s / cap)``, Gemma 2) before the mask.
    """
    b, t, h, dh = q.shape
    g = segments[0][1].shape[1]
    if k_transposed and t == 1:  # one query: [B,G,R,Dh] against K as stored (no T axis: XLA runs it faster)
        qg = q.reshape(b, g, h // g, dh)
        scores = [
            jnp.where(m[:, None], _softcap(_mm("bgrd,bgds->bgrs", qg, k, dtype), softcap), _NEG) for k, _, m in segments
        ]
        pv, out_shape = "bgrs,bgsd->bgrd", (b, 1, h, dh)
    else:
        qg = q.reshape(b, t, g, h // g, dh)
        scores = [
            jnp.where(
                m[:, None, None],
                _softcap(_mm("btgrd,bgsd->bgrts", qg, jnp.swapaxes(k, -1, -2) if k_transposed else k, dtype), softcap),
                _NEG,
            )
            for k, _, m in segments
        ]  # each [B,G,R,T,S_i]
        pv, out_shape = "bgrts,bgsd->btgrd", (b, t, h, dh)
    sizes = [s.shape[-1] for s in scores]
    probs = jax.nn.softmax(jnp.concatenate(scores, axis=-1) if len(scores) > 1 else scores[0], axis=-1)
    out = 0.0
    start = 0
    for (_, v, _), size in zip(segments, sizes, strict=True):
        out = out + _mm(pv, probs[..., start : start + size], v, dtype)
        start += size
    return out.reshape(out_shape)


def _attention_layout(k: Array, v: Array, k_transposed: bool) -> tuple[Array, Array]:
    """K/V ``[..., S, G, Dh]`` -> the layouts attention reads: ``v [..., G, S, Dh]``; ``k`` the same, or
    ``[..., G, Dh, S]`` if `k_transposed`.

    The network transposes stacked context segments once per call (all layers at once). A caller that
    keeps K/V in these layouts (:class:`KVCache`, :class:`LayerSegment`) pays no transpose.
    """
    n = k.ndim
    k = jnp.moveaxis(k, n - 3, n - 1) if k_transposed else jnp.swapaxes(k, n - 3, n - 2)
    return k, jnp.swapaxes(v, n - 3, n - 2)


def _k_transposed(config: TransformerConfig) -> bool:
    """Whether the model keeps K as ``[.., G, Dh, S]`` (grouped-query: read by the one-query path)."""
    return config.num_kv_heads < config.num_heads


class LayerSegment(struct.PyTreeNode):
    """A context segment already split by layer, in the layouts attention reads.

    ``k[i]``, ``v[i]`` for layer ``i``: ``v [B,G,S,Dh]`` (``G = num_kv_heads``); ``k`` the same for a
    multi-head model and ``[B,G,Dh,S]`` (transposed) for a grouped-query one; ``mask [B,S]`` True where
    a slot may be attended to. :meth:`PolicyValueTransformer.extend` accepts it wherever it accepts a
    ``(k, v, mask)`` triple. :meth:`KVCache.segment` is one (no copy), and a caller that evaluates
    against the same context many times inside a loop (MCTS over a shared prefix) converts a stacked
    triple once with :meth:`PolicyValueTransformer.layer_segment`: a stacked ``[Lyr, ...]`` segment
    would otherwise be sliced and transposed per layer — a full copy of the K/V — in every call.
    """

    k: tuple[Array, ...]
    v: tuple[Array, ...]
    mask: Array

    @classmethod
    def from_kv(cls, k: Array, v: Array, mask: Array, *, k_transposed: bool) -> LayerSegment:
        """From ``k, v [Lyr,B,S,G,Dh]`` and ``mask [B,S]`` (the layout of ``extend``'s K/V); `k_transposed`
        as the model reads K (``PolicyValueTransformer.layer_segment`` picks it for you)."""
        k, v = _attention_layout(k, v, k_transposed)
        return cls(
            k=tuple(k[i] for i in range(k.shape[0])),
            v=tuple(v[i] for i in range(v.shape[0])),
            mask=jnp.asarray(mask, bool),
        )


class _Block(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, x, sin, cos, self_mask, context):
        c = self.config
        dtype = jnp.dtype(c.dtype)
        w = self._params()
        norm = lambda x, name: _norm(x, w[name], c.norm_eps, c.norm_unit_offset)  # noqa: E731
        q, k, v = _qkv(c, w, norm(x, "attn_norm"), sin, cos)
        k_transposed = _k_transposed(c)
        segments = [*context, (*_attention_layout(k, v, k_transposed), self_mask)]
        att = _attend(q, segments, dtype, k_transposed, c.attn_softcap)  # [B,T,H,Dh]
        y = _mm("bthk,hkd->btd", att, w["attn_out"], dtype)
        x = x + (norm(y, "attn_post_norm") if c.post_norms else y)
        y = norm(x, "mlp_norm")
        if c.mlp == "gelu":
            y = jax.nn.gelu(_mm("btd,dm->btm", y, w["mlp_in"], dtype))
        else:
            gate = _mm("btd,dm->btm", y, w["mlp_gate"], dtype)
            gate = jax.nn.silu(gate) if c.mlp == "swiglu" else jax.nn.gelu(gate, approximate=True)
            y = gate * _mm("btd,dm->btm", y, w["mlp_in"], dtype)
        y = _mm("btm,md->btd", y, w["mlp_out"], dtype)
        x = x + (norm(y, "mlp_post_norm") if c.post_norms else y)
        return x, k, v

    def _params(self) -> dict[str, Array]:
        """Declares the layer's params. The order is part of the model: Flax draws init keys in call
        order, so today's params come first, in their original order, and the family options after."""
        c = self.config
        pdtype = jnp.dtype(c.param_dtype)
        d, h, g, dh, m = c.d_model, c.num_heads, c.num_kv_heads, c.head_dim, c.mlp_dim
        # Fan-in scaled normals; the residual-branch outputs shrunk by 1/(2·layers) (GPT-2 style).
        init, zeros, ones = nn.initializers.variance_scaling, nn.initializers.zeros, nn.initializers.ones
        out_scale = 1.0 / (2 * c.num_layers)
        qkv_init = init(1.0, "fan_in", "normal", in_axis=0, out_axis=(1, 2, 3))
        w = {}
        if g == h:  # multi-head: one fused projection
            w["qkv"] = _param(self, "qkv", qkv_init, (d, 3, h, dh), ("embed", None, "heads", "kv"), pdtype)
        else:  # grouped-query: G K/V heads
            q_init = init(1.0, "fan_in", "normal", in_axis=0, out_axis=(1, 2))
            w["q"] = _param(self, "q", q_init, (d, h, dh), ("embed", "heads", "kv"), pdtype)
            w["kv"] = _param(self, "kv", qkv_init, (d, 2, g, dh), ("embed", None, "heads", "kv"), pdtype)
        out_init = init(out_scale, "fan_in", "normal", in_axis=(0, 1), out_axis=2)
        w["attn_out"] = _param(self, "attn_out", out_init, (h, dh, d), ("heads", "kv", "embed"), pdtype)
        up_init, down_init = init(1.0, "fan_in", "normal"), init(out_scale, "fan_in", "normal")
        w["mlp_in"] = _param(self, "mlp_in", up_init, (d, m), ("embed", "mlp"), pdtype)
        w["mlp_out"] = _param(self, "mlp_out", down_init, (m, d), ("mlp", "embed"), pdtype)
        if c.mlp != "gelu":
            w["mlp_gate"] = _param(self, "mlp_gate", up_init, (d, m), ("embed", "mlp"), pdtype)
        if c.qkv_bias and g == h:
            w["qkv_bias"] = _param(self, "qkv_bias", zeros, (3, h, dh), (None, "heads", "kv"), pdtype)
        elif c.qkv_bias:
            w["q_bias"] = _param(self, "q_bias", zeros, (h, dh), ("heads", "kv"), pdtype)
            w["kv_bias"] = _param(self, "kv_bias", zeros, (2, g, dh), (None, "heads", "kv"), pdtype)
        norm_init = zeros if c.norm_unit_offset else ones  # the identity either way
        if c.qk_norm:
            w["q_norm"] = _param(self, "q_norm", norm_init, (dh,), (None,), pdtype)
            w["k_norm"] = _param(self, "k_norm", norm_init, (dh,), (None,), pdtype)
        if c.post_norms:
            w["attn_post_norm"] = _param(self, "attn_post_norm", norm_init, (d,), ("embed",), pdtype)
            w["mlp_post_norm"] = _param(self, "mlp_post_norm", norm_init, (d,), ("embed",), pdtype)
        w["attn_norm"] = _param(self, "attn_norm", norm_init, (d,), ("embed",), pdtype)
        w["mlp_norm"] = _param(self, "mlp_norm", norm_init, (d,), ("embed",), pdtype)
        return adapt(self, c, w)


def _qkv(c: TransformerConfig, w: dict[str, Array], y: Array, sin: Array, cos: Array):
    """Queries (rotated, scaled by ``Dh**-0.5``) ``[B,T,H,Dh]``; K (rotated) and V ``[B,T,G,Dh]`` in the
    compute dtype. Biases (Qwen2) and the per-head QK-norm (Qwen3) come before the rotation."""
    dtype, dh = jnp.dtype(c.dtype), c.head_dim
    scale = dh**-0.5 if c.query_scale is None else c.query_scale**-0.5
    f32 = jnp.float32
    if c.num_kv_heads == c.num_heads:
        qkv = _mm("btd,dchk->btchk", y, w["qkv"], dtype)  # [B,T,3,H,Dh]
        if not (c.qkv_bias or c.qk_norm):  # today's default path, op for op
            qk = _rotate(qkv[:, :, :2], sin, cos)
            return qk[:, :, 0] * scale, qk[:, :, 1].astype(dtype), qkv[:, :, 2].astype(dtype)
        if c.qkv_bias:
            qkv = qkv + w["qkv_bias"].astype(f32)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]
    else:
        q = _mm("btd,dhk->bthk", y, w["q"], dtype)  # [B,T,H,Dh]
        kv = _mm("btd,dcgk->btcgk", y, w["kv"], dtype)  # [B,T,2,G,Dh]
        if c.qkv_bias:
            q, kv = q + w["q_bias"].astype(f32), kv + w["kv_bias"].astype(f32)
        k, v = kv[:, :, 0], kv[:, :, 1]
    if c.qk_norm:
        q, k = (_norm(x, w[n], c.norm_eps, c.norm_unit_offset) for x, n in ((q, "q_norm"), (k, "k_norm")))
    sin1, cos1 = sin[:, :, 0], cos[:, :, 0]  # [B,T,1,Dh/2]
    return _rotate(q, sin1, cos1) * scale, _rotate(k, sin1, cos1).astype(dtype), v.astype(dtype)


class _Network(nn.Module):
    config: TransformerConfig

    @nn.compact
    def __call__(self, tokens, positions, key_mask, context):
        """tokens/positions [B,T]; key_mask [B,T] bool or None; context: ((k, v, mask [B,S]), ...)."""
        c = self.config
        pdtype = jnp.dtype(c.param_dtype)
        embed_shape = (c.vocab_size, c.d_model)
        embed = _param(self, "embed", nn.initializers.normal(1.0), embed_shape, ("vocab", "embed"), pdtype)
        if c.vocab_size <= _ONE_HOT_MAX_VOCAB:
            # A one-hot matmul instead of a gather: exact in f32, its gradient is a matmul rather than a
            # scatter-add (faster on CPU), and it shards over any mesh without gather resharding.
            x = _mm("btv,vd->btd", jax.nn.one_hot(tokens, c.vocab_size, dtype=jnp.float32), embed, jnp.float32)
        else:
            x = jnp.take(embed, tokens, axis=0, mode="clip").astype(jnp.float32)
        if c.embed_scale:  # Gemma: sqrt(D), rounded to the param dtype as Gemma's reference does
            x = x * jnp.asarray(c.d_model**0.5, pdtype).astype(jnp.float32)

        kinds = (False, True) if c.local_layers else (False,)  # global layers, then Gemma 3's local ones
        rotations = {local: _rotation(positions, rope_frequencies(c, local=local)) for local in kinds}

        t = tokens.shape[1]
        self_mask = jnp.tril(jnp.ones((t, t), bool))[None]  # [1,T,T]
        if key_mask is not None:
            self_mask = self_mask & key_mask[:, None, :]
        ks, vs = [], []
        context = [
            (seg.k, seg.v, seg.mask[:, None, :])
            if isinstance(seg, LayerSegment)
            else (*_attention_layout(seg[0], seg[1], _k_transposed(c)), seg[2][:, None, :])
            for seg in context
        ]
        for i in range(c.num_layers):
            layer_ctx = [(kt[i], vt[i], m) for kt, vt, m in context]
            sin, cos = rotations[i in c.local_layers]
            x, k, v = _Block(c, name=f"layer_{i}")(x, sin, cos, self_mask, layer_ctx)
            ks.append(k)
            vs.append(v)
        norm_init = nn.initializers.zeros if c.norm_unit_offset else nn.initializers.ones
        final_scale = _param(self, "final_norm", norm_init, (c.d_model,), ("embed",), pdtype)
        x = _norm(x, final_scale, c.norm_eps, c.norm_unit_offset)
        head_init = nn.initializers.normal(0.02)
        if c.tie_embeddings:  # the policy head is the embedding of the action tokens
            logits = _mm("btd,ad->bta", x, embed[: c.num_actions], jnp.dtype(c.dtype))
        else:
            w_pi = _param(self, "policy_head", head_init, (c.d_model, c.num_actions), ("embed", "vocab"), pdtype)
            logits = _mm("btd,da->bta", x, w_pi, jnp.dtype(c.dtype))
        logits = _softcap(logits, c.logit_softcap)
        n_out = 1 if c.value_head == "scalar" else c.num_value_bins
        w_v = _param(self, "value_head", head_init, (c.d_model, n_out), ("embed", None), pdtype)
        b_v = _param(self, "value_bias", nn.initializers.zeros, (n_out,), (None,), pdtype)
        value_logits = _mm("btd,dn->btn", x, w_v, jnp.dtype(c.dtype)) + b_v.astype(jnp.float32)
        return logits, value_logits, jnp.stack(ks), jnp.stack(vs)


# -- public model -------------------------------------------------------------------------------------
def value_bins(num_bins: int) -> Array:
    """[num_bins] float32: centres of the categorical value head's bins, evenly spaced on [-1, 1]."""
    return jnp.linspace(-1.0, 1.0, num_bins, dtype=jnp.float32)


def two_hot(values: Array, num_bins: int) -> Array:
    """Categorical target for scalar ``values [...]`` in [-1, 1]: ``[..., num_bins]`` two-hot probabilities.

    The mass is split between the two nearest bins so that the expectation equals the (clipped) value.
    """
    x = (jnp.clip(values, -1.0, 1.0) + 1.0) * 0.5 * (num_bins - 1)
    lo = jnp.clip(jnp.floor(x), 0, num_bins - 2)
    frac = x - lo
    lo = lo.astype(jnp.int32)
    return jax.nn.one_hot(lo, num_bins) * (1.0 - frac)[..., None] + jax.nn.one_hot(lo + 1, num_bins) * frac[..., None]


@dataclasses.dataclass(frozen=True)
class PolicyValueTransformer:
    """Functional policy-value transformer (hashable: holds only its config).

    Example::

        model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec))
        params = model.init(key)
        logits, values = model.apply(params, tokens)  # [B,T,A], [B,T]
    """

    config: TransformerConfig

    def __post_init__(self):
        if not isinstance(self.config, TransformerConfig):
            raise ValueError(f"expected a TransformerConfig, got {type(self.config).__name__}")

    @property
    def _net(self) -> _Network:
        return _Network(self.config)

    # -- params ------------------------------------------------------------------------------------
    def _boxed_init(self, key: PRNGKey):
        tokens = jnp.zeros((1, 1), jnp.int32)
        return self._net.init(key, tokens, tokens, None, ())["params"]

    def init(self, key: PRNGKey) -> Params:
        """Fresh params: a plain nested dict of arrays (no partitioning boxes)."""
        return nn.meta.unbox(self._boxed_init(key))

    def logical_axes(self) -> Any:
        """Pytree (same structure as the params) of ``jax.sharding.PartitionSpec`` of logical axis names."""
        abstract = jax.eval_shape(self._boxed_init, jax.random.key(0))
        return nn.get_partition_spec(abstract)

    def num_params(self, params: Params | None = None) -> int:
        """Number of scalar parameters (of `params`, or of a fresh init computed abstractly)."""
        if params is None:
            params = jax.eval_shape(self.init, jax.random.key(0))
        return int(sum(math.prod(x.shape) for x in jax.tree.leaves(params)))

    # -- forward passes ----------------------------------------------------------------------------
    def _heads(self, logits: Array, value_logits: Array) -> tuple[Array, Array]:
        if self.config.value_head == "scalar":
            return logits, jnp.tanh(value_logits[..., 0])
        probs = jax.nn.softmax(value_logits, axis=-1)
        return logits, probs @ value_bins(self.config.num_value_bins)

    def _check_tokens(self, tokens: Array, name: str = "tokens") -> None:
        if tokens.ndim != 2:
            raise ValueError(f"{name}: expected shape [B, T], got {tokens.shape}")
        if tokens.shape[1] > self.config.max_length:
            raise ValueError(f"{name}: expected T <= max_length={self.config.max_length}, got {tokens.shape}")

    def _default_positions(self, tokens: Array, positions: Array | None) -> Array:
        if positions is None:
            return jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
        positions = jnp.asarray(positions, jnp.int32)
        if positions.shape != tokens.shape:
            raise ValueError(f"positions: expected shape {tokens.shape} (like tokens), got {positions.shape}")
        return positions

    def apply(
        self,
        params: Params,
        tokens: Array,
        *,
        positions: Array | None = None,
        mask: Array | None = None,
        return_value_logits: bool = False,
    ):
        """Full causal forward.

        Args:
          tokens: [B, T] int32.
          positions: [B, T] int32 rotary positions (default ``0..T-1`` in every row; give them for
            left-padded or offset rows).
          mask: [B, T] bool, optional: False tokens are never attended to as keys (e.g. left padding).
          return_value_logits: also return the value head's raw output.

        Returns:
          ``(logits [B,T,A] f32, values [B,T] f32 in [-1, 1])``, plus ``value_logits`` if asked:
          ``[B,T,num_value_bins]`` (categorical; ``softmax(.) @ value_bins == values``) or ``[B,T]``
          pre-tanh (scalar). ``logits[:, t]``/``values[:, t]`` belong to the state ending at ``tokens[:, t]``.
        """
        tokens = jnp.asarray(tokens, jnp.int32)
        self._check_tokens(tokens)
        positions = self._default_positions(tokens, positions)
        if mask is not None and jnp.shape(mask) != tokens.shape:
            raise ValueError(f"mask: expected shape {tokens.shape}, got {jnp.shape(mask)}")
        logits, value_logits, _, _ = self._net.apply({"params": params}, tokens, positions, mask, ())
        logits, values = self._heads(logits, value_logits)
        if not return_value_logits:
            return logits, values
        if self.config.value_head == "scalar":
            value_logits = value_logits[..., 0]
        return logits, values, value_logits

    def extend(
        self,
        params: Params,
        tokens: Array,
        positions: Array,
        context: Sequence[tuple[Array, Array, Array]] = (),
    ) -> tuple[Array, Array, tuple[Array, Array]]:
        """Evaluates new tokens against context K/V segments (the primitive of prefix-shared search).

        Args:
          tokens: [B, T] int32 new tokens.
          positions: [B, T] int32 their positions.
          context: sequence of segments ``(k [Lyr,B,S,G,Dh], v [Lyr,B,S,G,Dh], mask [B,S] bool)`` (``G`` =
            ``num_kv_heads``) or :class:`LayerSegment` (e.g. ``KVCache.segment()``); the new tokens
            attend to every context slot whose mask is True, and causally to each other.

        Returns:
          ``(logits [B,T,A], values [B,T], (k, v))`` with the new tokens' own K/V, each ``[Lyr,B,T,G,Dh]``
          (usable as a later context segment).
        """
        tokens = jnp.asarray(tokens, jnp.int32)
        self._check_tokens(tokens)
        positions = self._default_positions(tokens, positions)
        c = self.config
        want = (c.num_layers, tokens.shape[0], None, c.num_kv_heads, c.head_dim)
        segs = []
        for i, seg in enumerate(context):
            if isinstance(seg, LayerSegment):
                self._check_layer_segment(i, seg, tokens.shape[0])
                segs.append(seg)
                continue
            if len(seg) != 3:
                raise ValueError(f"context[{i}]: expected a (k, v, mask) triple, got {len(seg)} items")
            k, v, m = seg
            ok = k.ndim == 5 and all(w is None or w == s for w, s in zip(want, k.shape, strict=True))
            if not ok or v.shape != k.shape or jnp.shape(m) != (k.shape[1], k.shape[2]):
                raise ValueError(
                    f"context[{i}]: expected k, v of shape [Lyr={c.num_layers}, B={tokens.shape[0]}, S, "
                    f"G={c.num_kv_heads}, Dh={c.head_dim}] and mask [B, S]; got k {k.shape}, v {v.shape}, "
                    f"mask {jnp.shape(m)}"
                )
            segs.append((k, v, jnp.asarray(m, bool)))
        logits, value_logits, k, v = self._net.apply({"params": params}, tokens, positions, None, tuple(segs))
        logits, values = self._heads(logits, value_logits)
        return logits, values, (k, v)

    def _check_layer_segment(self, i: int, seg: LayerSegment, batch: int) -> None:
        c = self.config
        n = len(seg.k)
        s = seg.mask.shape[-1] if seg.mask.ndim == 2 else None
        want_v = (batch, c.num_kv_heads, s, c.head_dim)
        want_k = (batch, c.num_kv_heads, c.head_dim, s) if _k_transposed(c) else want_v
        if (
            n != c.num_layers
            or len(seg.v) != n
            or seg.mask.shape != (batch, s)
            or any(k.shape != want_k for k in seg.k)
            or any(v.shape != want_v for v in seg.v)
        ):
            k_layout = "[B, G, Dh, S]" if _k_transposed(c) else "[B, G, S, Dh]"
            raise ValueError(
                f"context[{i}]: expected a LayerSegment of {c.num_layers} layers with k[i] {k_layout}, "
                f"v[i] [B, G, S, Dh] (B={batch}, G={c.num_kv_heads}, Dh={c.head_dim}) and mask [B, S]; got "
                f"{n} layers, k {[k.shape for k in seg.k]}, v {[v.shape for v in seg.v]}, "
                f"mask {seg.mask.shape}"
            )

    def layer_segment(self, k: Array, v: Array, mask: Array) -> LayerSegment:
        """A stacked ``(k, v [Lyr,B,S,G,Dh], mask [B,S])`` segment (``extend``'s K/V layout) as a
        :class:`LayerSegment` in this model's layouts: convert once, outside a loop that reads it."""
        return LayerSegment.from_kv(k, v, mask, k_transposed=_k_transposed(self.config))

    def init_cache(self, batch_size: int) -> KVCache:
        """An empty cache of ``config.max_length`` slots."""
        c = self.config
        shape = (c.num_layers, batch_size, c.max_length, c.num_kv_heads, c.head_dim)
        zeros = jnp.zeros(shape, jnp.dtype(c.dtype))
        return self._cache(zeros, zeros, jnp.zeros((batch_size,), jnp.int32))

    def _cache(self, k: Array, v: Array, lengths: Array) -> KVCache:
        """A cache from stacked ``k, v [Lyr,B,max_length,G,Dh]``: split by layer in the attention layouts."""
        k, v = _attention_layout(k, v, _k_transposed(self.config))
        return KVCache(k=tuple(k), v=tuple(v), lengths=lengths)

    def prefill(self, params: Params, tokens: Array, lengths: Array) -> tuple[Array, Array, KVCache]:
        """Encodes right-padded prompts and returns a cache sized ``config.max_length``.

        Args:
          tokens: [B, T] int32, row ``b`` valid in ``[0, lengths[b])`` (the rest is padding, which
            causality keeps out of the valid positions).
          lengths: [B] int32.

        Returns:
          ``(logits [B,T,A], values [B,T], cache)``; the prediction for the next token of row ``b`` is
          at ``logits[b, lengths[b] - 1]``. Cache slots ``>= lengths[b]`` hold padding K/V that
          :meth:`decode` never reads (it attends to slots ``< position``) and overwrites.
        """
        tokens = jnp.asarray(tokens, jnp.int32)
        self._check_tokens(tokens)
        lengths = jnp.asarray(lengths, jnp.int32)
        if lengths.shape != tokens.shape[:1]:
            raise ValueError(f"lengths: expected shape {tokens.shape[:1]}, got {lengths.shape}")
        logits, values, (k, v) = self.extend(params, tokens, None)
        pad = [(0, 0), (0, 0), (0, self.config.max_length - tokens.shape[1]), (0, 0), (0, 0)]
        return logits, values, self._cache(jnp.pad(k, pad), jnp.pad(v, pad), lengths)

    def decode(self, params: Params, cache: KVCache, tokens: Array, positions: Array) -> tuple[Array, Array, KVCache]:
        """One token per row at its own position.

        Args:
          cache: a :class:`KVCache` whose slots ``< positions[b]`` hold row ``b``'s earlier tokens.
          tokens: [B] int32.
          positions: [B] int32 (< max_length; a write past the end is dropped).

        Returns:
          ``(logits [B,A], values [B], cache)``: the token's K/V written at ``positions``, and
          ``lengths = positions + 1``. Attends to slots ``[0, position]`` of its row.
        """
        tokens = jnp.asarray(tokens, jnp.int32)
        positions = jnp.asarray(positions, jnp.int32)
        if tokens.ndim != 1 or positions.shape != tokens.shape or cache.batch_size != tokens.shape[0]:
            raise ValueError(
                f"decode: expected tokens [B] and positions [B] with B = cache batch {cache.batch_size}; "
                f"got tokens {tokens.shape}, positions {positions.shape}"
            )
        logits, values, (k, v) = self.extend(params, tokens[:, None], positions[:, None], (cache.segment(positions),))
        rows = jnp.arange(tokens.shape[0])
        # Write slot `positions[b]` of row b in every layer (each update [B, G, Dh]), in place; the slot
        # axis is K's last for a transposed K, else the third (as V's).
        k_slot = (
            (rows, slice(None), slice(None), positions)
            if _k_transposed(self.config)
            else (rows, slice(None), positions)
        )
        new_k = tuple(ck.at[k_slot].set(k[i, :, 0].astype(ck.dtype)) for i, ck in enumerate(cache.k))
        new_v = tuple(cv.at[rows, :, positions].set(v[i, :, 0].astype(cv.dtype)) for i, cv in enumerate(cache.v))
        return logits[:, 0], values[:, 0], KVCache(k=new_k, v=new_v, lengths=positions + 1)
