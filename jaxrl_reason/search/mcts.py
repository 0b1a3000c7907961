"""Batched AlphaZero / Gumbel MCTS over tokens, on mctx.

The search runs mctx (``gumbel_muzero_policy`` or ``muzero_policy``) over a batch of env states.
Three things make it work for token MDPs:

* **Top-K actions per node.** mctx's action space is ``K`` slots. Each node's embedding holds the map
  ``slot -> token id`` of the ``K`` most probable *legal* tokens under the prior at that node; slots
  beyond the number of legal tokens are invalid (``invalid_actions`` at the root, ``-inf`` prior
  logits inside the tree). Tree memory is ``O(B * N * K)``, independent of the vocabulary.
* **The env is the model** (AlphaZero): the recurrent function steps the real env (``vmap(env.step)``)
  and evaluates the network on the new state. Rewards are the mover's, the discount is ``-1`` when the
  turn passes to the opponent, ``+1`` otherwise and ``0`` once the episode is over (a finished
  state stays finished, gives zero reward and value ``0``).
* **Prefix-shared evaluation.** The root prefix is encoded once per search (``model.extend`` without
  context); its K/V are shared by every node. A simulation evaluates only the path from the root:
  ``evaluation="kv"`` carries the path's K/V in each node's embedding and runs ONE new token per
  simulation; ``evaluation="window"`` recomputes the path's ``max_depth``-token window per simulation;
  ``evaluation="full"`` runs the whole sequence through ``model.apply`` (no sharing; the reference).

The depth is bounded by ``max_depth`` (the path buffer is static); a leaf at the bound is evaluated by
the value head and never expanded further.

**Rollouts** (optional, AlphaGo's mixed leaf evaluation): with ``rollouts=R > 0`` each new leaf is also
played out to the end ``R`` times with uniformly random legal tokens (:func:`random_rollout_value`), and
its value is ``(1 - rollout_weight) * v + rollout_weight * z̄`` (``v`` the value head, ``z̄`` the mean
rollout return for the leaf's player to move). Cheap for board games, where random play still says
something about a position; useless for tasks whose random token strings never verify.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import mctx
from flax import struct

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.models.transformer import LayerSegment, PolicyValueTransformer
from jaxrl_reason.search.config import SearchConfig
from jaxrl_reason.search.on_mesh import per_row
from jaxrl_reason.types import Array, EnvState, Params, PRNGKey, SearchOutput

#: States whose per-row size is at most this many bytes are stored in the tree; larger ones (big
#: vocabularies: the legal mask alone is ``A`` bytes) are rebuilt by replaying the path from the root.
STORE_STATE_MAX_BYTES = 4096


@struct.dataclass
class NodeEmbedding:
    """What mctx stores per node (leading axis B in the recurrent function, [B, N] in the tree)."""

    slots: Array  # [K] int32: slot -> token id of this node's candidate actions; -1 = invalid slot
    path: Array  # [D] int32: tokens from the root to this node (pad beyond `depth`)
    depth: Array  # [] int32: number of tokens on the path (root: 0)
    state: Any = None  # EnvState of this node, or None when states are replayed from the root
    kv: Any = None  # (k, v) each [layers, D, H, Dh]: the path's K/V (evaluation="kv"), else None


@struct.dataclass
class _Shared:
    """Per-search data shared by all nodes (passed to mctx as part of `params`)."""

    params: Params
    root_state: EnvState  # [B]
    prefix: Any  # the root prefix's K/V (a LayerSegment for our transformer); None for "full"
    root_length: Array  # [B] int32


def _state_bytes(state: EnvState) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(state)) // max(state.length.size, 1)


def _top_k_slots(logits: Array, legal: Array, k: int) -> tuple[Array, Array]:
    """Masked prior -> (slots [B, K] int32 with -1 for invalid, slot prior logits [B, K] with -inf)."""
    masked = jnp.where(legal, logits, -jnp.inf)
    top, idx = jax.lax.top_k(masked, k)
    valid = jnp.isfinite(top)
    return jnp.where(valid, idx, -1).astype(jnp.int32), jnp.where(valid, top, -jnp.inf)


def _transition(env: TokenEnv, parent: EnvState, token: Array):
    """(child [B], reward [B], discount [B]) of playing `token` [B] in `parent` [B], mctx convention."""
    child = jax.vmap(env.step)(parent, token)
    mover = parent.current_player
    reward = jnp.take_along_axis(child.rewards, mover[:, None], axis=1)[:, 0]
    same = child.current_player == mover
    discount = jnp.where(child.done, 0.0, jnp.where(same, 1.0, -1.0)).astype(jnp.float32)
    return child, reward, discount


def _replay(env: TokenEnv, root: EnvState, path: Array, depth: Array) -> EnvState:
    """The state reached from `root` [B] by the first `depth` [B] tokens of `path` [B, D]."""

    def body(i, state):
        nxt = jax.vmap(env.step)(state, path[:, i])
        live = i < depth
        return jax.tree.map(lambda a, b: jnp.where(live.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), nxt, state)

    return jax.lax.fori_loop(0, path.shape[1], body, root)


def _last(x: Array, index: Array) -> Array:
    """x [B, T, ...] at per-row index [B] -> [B, ...]."""
    idx = index.reshape((-1,) + (1,) * (x.ndim - 1))
    return jnp.take_along_axis(x, idx, axis=1)[:, 0]


def encode_prefix(model, params: Params, states: EnvState, cache=None):
    """The K/V segment of each row's prefix ``tokens[:length]``, shared by a whole search.

    Encodes the prefixes with one ``model.extend`` (no context), or reuses `cache` (a ``jr.KVCache``
    whose first ``length`` slots hold the prefix, e.g. kept up to date by a decoding loop; read in
    place, no copy).

    Returns ``(segment, logits [B, A], value [B])``: for :class:`~jaxrl_reason.PolicyValueTransformer`
    ``segment`` is a ``jr.LayerSegment`` (split by layer in the layouts attention reads, so the search's
    loop reads it in place), for other models the stacked ``(k, v, mask)`` of their ``extend``; ``mask
    [B, S]`` is True on the prefix; logits/value are the network's output at the last prefix token (the
    root's prior and value).
    """
    tokens, length = states.tokens, states.length
    batch, seq = tokens.shape
    if cache is None:
        positions = jnp.broadcast_to(jnp.arange(seq, dtype=jnp.int32), (batch, seq))
        _, _, (k, v) = model.extend(params, tokens, positions, context=())  # logits unused: XLA drops them
        prefix = (k, v, jnp.arange(seq)[None] < length[:, None])
        if isinstance(model, PolicyValueTransformer):  # other models get the plain (k, v, mask) segment
            prefix = model.layer_segment(*prefix)
    else:
        prefix = cache.segment(length)
    # The root's own output: its last token attends to the rest of the prefix (only [B, 1, A] logits).
    last = jnp.maximum(length - 1, 0)
    before_last = _with_mask(prefix, jnp.arange(_mask(prefix).shape[1])[None] < last[:, None])
    logits, values, _ = model.extend(params, _last(tokens[:, :, None], last), last[:, None], context=(before_last,))
    return prefix, logits[:, 0], values[:, 0]


def _mask(segment) -> Array:
    return segment.mask if isinstance(segment, LayerSegment) else segment[2]


def _with_mask(segment, mask: Array):
    return segment.replace(mask=mask) if isinstance(segment, LayerSegment) else (*segment[:2], mask)


def _path_kv_zeros(prefix, like: Array, batch: int, depth: int) -> Array:
    """Zeros ``[B, layers, depth, G, Dh]`` (the per-node buffer of a path's K/V) for `prefix`'s model.

    Derived from the traced `like`: a constant would make XLA constant-fold mctx's whole
    ``[B, N+1, layers, D, G, Dh]`` initial tree at compile time.
    """
    if isinstance(prefix, LayerSegment):
        v = prefix.v[0]  # [B, G, S, Dh]
        shape = (batch, len(prefix.v), depth, v.shape[1], v.shape[3])
    else:
        v = prefix[1]  # [layers, B, S, G, Dh]
        shape = (batch, v.shape[0], depth, *v.shape[3:])
    return jnp.broadcast_to((like * 0).astype(v.dtype), shape)


def _evaluate_full(model, params, state: EnvState):
    logits, values = model.apply(params, state.tokens)
    last = jnp.maximum(state.length - 1, 0)
    return _last(logits, last), _last(values, last)


def random_rollout_value(env: TokenEnv, states: EnvState, key: PRNGKey, *, num_rollouts: int, max_steps: int):
    """Mean return ``[B]`` of `num_rollouts` uniformly random playouts from each of `states` [B].

    The return is the sum of the rewards of ``states.current_player`` until the episode ends (0 for a
    state already done); a playout still running after `max_steps` tokens counts what it got so far.
    Pure; the loop stops as soon as every playout has ended.
    """
    batch = states.length.shape[0]
    rep = jax.tree.map(lambda x: jnp.repeat(x, num_rollouts, axis=0), states)
    player = rep.current_player[:, None]

    def cond(carry):
        s, _, _, i = carry
        return (i < max_steps) & ~jnp.all(s.done)

    def body(carry):
        s, total, key, i = carry
        key, sub = jax.random.split(key)
        token = jax.random.categorical(sub, jnp.where(s.legal_action_mask, 0.0, -1e9)).astype(jnp.int32)
        nxt = jax.vmap(env.step)(s, token)
        reward = jnp.take_along_axis(nxt.rewards, player, axis=1)[:, 0]
        return nxt, total + jnp.where(s.done, 0.0, reward), key, i + 1

    total = jnp.zeros((batch * num_rollouts,), jnp.float32)
    _, total, _, _ = jax.lax.while_loop(cond, body, (rep, total, key, jnp.int32(0)))
    return total.reshape(batch, num_rollouts).mean(axis=1)


def make_recurrent_fn(
    model,
    env: TokenEnv,
    *,
    top_k: int,
    max_depth: int,
    evaluation: str,
    store_states: bool,
    rollouts: int = 0,
    rollout_weight: float = 0.5,
    use_reward: bool = True,
):
    """The mctx recurrent function ``(shared, key, slot [B], NodeEmbedding [B]) -> (output, child)``.

    ``use_reward=False``: the env's reward never enters the tree; a finished child is worth what the value
    head says of it (its whole return, as the immediate reward with discount 0)."""
    max_pos = model.config.max_length - 1

    def recurrent_fn(shared: _Shared, key, action, emb: NodeEmbedding):
        # The prefix comes split by layer in the layouts attention reads (LayerSegment): a stacked prefix
        # would be sliced per layer, i.e. the whole loop-invariant K/V copied, in every simulation.
        prefix = shared.prefix
        batch = action.shape[0]
        token = jnp.take_along_axis(emb.slots, action[:, None], axis=1)[:, 0]
        # An invalid slot can only be reached if every prior underflows; play the top token instead.
        token = jnp.where(token < 0, emb.slots[:, 0], token)
        parent = emb.state if store_states else _replay(env, shared.root_state, emb.path, emb.depth)
        child, reward, discount = _transition(env, parent, token)

        rows = jnp.arange(batch)
        at = jnp.minimum(emb.depth, max_depth - 1)  # mctx never expands below max_depth
        path = emb.path.at[rows, at].set(token)
        depth = emb.depth + 1
        kv = None
        if evaluation == "full":
            logits, value = _evaluate_full(model, shared.params, child)
        elif evaluation == "window":
            positions = jnp.minimum(shared.root_length[:, None] + jnp.arange(max_depth), max_pos)
            logits, values, _ = model.extend(shared.params, path, positions, context=(prefix,))
            logits, value = _last(logits, depth - 1), _last(values, depth - 1)
        else:  # "kv": one new token attends to the prefix and to the parent's path K/V
            pk, pv = emb.kv  # [B, layers, D, H, Dh]
            path_seg = (
                jnp.moveaxis(pk, 0, 1),
                jnp.moveaxis(pv, 0, 1),
                jnp.arange(max_depth)[None] < emb.depth[:, None],
            )
            positions = jnp.minimum(shared.root_length + emb.depth, max_pos)[:, None]
            logits, values, (nk, nv) = model.extend(
                shared.params, token[:, None], positions, context=(prefix, path_seg)
            )
            logits, value = logits[:, 0], values[:, 0]
            kv = (
                pk.at[rows, :, at].set(jnp.moveaxis(nk[:, :, 0], 0, 1)),
                pv.at[rows, :, at].set(jnp.moveaxis(nv[:, :, 0], 0, 1)),
            )

        slots, prior = _top_k_slots(logits.astype(jnp.float32), child.legal_action_mask, top_k)
        value = value.astype(jnp.float32)
        if rollouts:
            playout = random_rollout_value(env, child, key, num_rollouts=rollouts, max_steps=env.spec.max_length)
            value = (1.0 - rollout_weight) * value + rollout_weight * playout
        if not use_reward:  # blind to the verifier: the value head judges a finished response
            own = jnp.where(child.current_player == parent.current_player, value, -value)
            reward = jnp.where(child.done, own, 0.0)
        value = jnp.where(child.done, 0.0, value)
        out = mctx.RecurrentFnOutput(reward=reward, discount=discount, prior_logits=prior, value=value)
        new = NodeEmbedding(slots=slots, path=path, depth=depth, state=child if store_states else None, kv=kv)
        return out, new

    return recurrent_fn


def mcts_policy(
    model,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    search: SearchConfig | None = None,
    cache: Any = None,
    qtransform: Callable | None = None,
    mesh: jax.sharding.Mesh | None = None,
    **options: Any,
) -> SearchOutput:
    """Batched token MCTS from `states` (leading axis B); pure, jit it at the call site.

    Args:
      model: a policy-value network with ``extend``/``apply`` (``jr.PolicyValueTransformer``); hashable.
      params: its parameters.
      env: the token MDP; its ``step`` is the search's dynamics.
      states: [B] root states. Values are for ``states.current_player``.
      key: PRNG key.
      search: the search's options (:class:`~jaxrl_reason.search.SearchConfig`); keyword `options`
        (``num_simulations=``, ``top_k=``, ``algorithm=``, ``max_depth=``, ...) override its fields:
        ``num_simulations`` simulations per search; ``top_k`` K candidate tokens per node (clipped to
        A); ``algorithm`` "gumbel" or "muzero" (PUCT); ``max_depth`` D, the deepest node is D tokens
        below the root (evaluated, not expanded); ``evaluation`` "kv" (path K/V in the tree, one new
        token per simulation), "window" (recompute the path's D tokens) or "full" (no prefix sharing);
        ``store_states`` keep each node's EnvState in the tree or replay the path (None: True when a
        state takes at most ``STORE_STATE_MAX_BYTES`` per row); ``rescale_values`` mctx's min-max Q
        normalisation (False keeps Q on its natural [-1, 1] scale: recommended for 0/1-reward tasks);
        ``rollouts`` R random playouts per new leaf mixed in with weight ``rollout_weight`` λ,
        ``(1-λ)·v + λ·mean(returns)``; the rest go to mctx (gumbel: ``max_num_considered_actions``,
        ``gumbel_scale``; muzero: ``dirichlet_*``, ``pb_c_*``, ``temperature``).
      cache: optional ``jr.KVCache`` [B] whose first ``states.length`` slots hold the prefixes' K/V (a
        decoding loop keeps one); then the prefix is not re-encoded. Ignored by evaluation="full".
      qtransform: an explicit mctx Q transform (overrides ``rescale_values``).
      mesh: search each root on its own with key ``split(key, B)[b]``, the roots split over this mesh's
        devices (:mod:`jaxrl_reason.search.on_mesh`): the result does not depend on the mesh. Not with `cache`.

    Returns:
      ``SearchOutput(action [B] token ids, action_weights [B, A], root_value [B], search_tree)``;
      ``search_tree`` is the mctx tree over K slots, its embeddings are :class:`NodeEmbedding`.
    """
    if mesh is not None:
        if cache is not None:
            raise ValueError("mcts_policy: expected cache=None with a mesh (each root is searched on its own)")
        kw = dict(search=search, qtransform=qtransform, **options)
        return per_row(lambda p, s, k: mcts_policy(model, p, env, s, k, **kw), mesh, params, states, key)
    cfg = (search or SearchConfig(num_simulations=options.get("num_simulations", 32))).replace(**options)
    spec = env.spec
    if states.tokens.ndim != 2 or states.tokens.shape[1] != spec.max_length:
        raise ValueError(f"states must be batched: tokens [B, {spec.max_length}], got {states.tokens.shape}")
    k = min(int(cfg.top_k), spec.num_actions)
    store_states = _state_bytes(states) <= STORE_STATE_MAX_BYTES if cfg.store_states is None else cfg.store_states
    if cfg.evaluation == "full":
        prefix = None
        logits, value = _evaluate_full(model, params, states)
    else:
        prefix, logits, value = encode_prefix(model, params, states, cache)
    slots, prior = _top_k_slots(logits.astype(jnp.float32), states.legal_action_mask, k)
    root = _root(spec, cfg, states, prefix, slots, prior, value, store_states)
    recurrent_fn = make_recurrent_fn(
        model,
        env,
        top_k=k,
        max_depth=int(cfg.max_depth),
        evaluation=cfg.evaluation,
        store_states=store_states,
        rollouts=int(cfg.rollouts),
        rollout_weight=float(cfg.rollout_weight),
        use_reward=bool(cfg.use_reward),
    )
    shared = _Shared(params=params, root_state=states, prefix=prefix, root_length=states.length)
    out = _run_mctx(cfg, shared, key, root, recurrent_fn, slots < 0, qtransform)
    return _token_output(out, slots, spec.num_actions)


def _root(spec, cfg: SearchConfig, states: EnvState, prefix, slots, prior, value, store_states: bool):
    """mctx's root: the masked top-K prior, the value (0 at a finished state) and the root's embedding."""
    batch, depth = states.tokens.shape[0], int(cfg.max_depth)
    kv = None
    if cfg.evaluation == "kv":
        zero = _path_kv_zeros(prefix, states.length[0], batch, depth)
        kv = (zero, zero)
    embedding = NodeEmbedding(
        slots=slots,
        path=jnp.full((batch, depth), spec.pad_id, jnp.int32),
        depth=jnp.zeros((batch,), jnp.int32),
        state=states if store_states else None,
        kv=kv,
    )
    return mctx.RootFnOutput(
        prior_logits=prior, value=jnp.where(states.done, 0.0, value.astype(jnp.float32)), embedding=embedding
    )


def _run_mctx(cfg: SearchConfig, shared, key, root, recurrent_fn, invalid, qtransform):
    """One call of ``mctx.gumbel_muzero_policy`` or ``mctx.muzero_policy`` with the config's options."""
    common = dict(
        params=shared,
        rng_key=key,
        root=root,
        recurrent_fn=recurrent_fn,
        num_simulations=int(cfg.num_simulations),
        invalid_actions=invalid,
        max_depth=int(cfg.max_depth),
    )
    if qtransform is None and not cfg.rescale_values:
        qtransform = (
            functools.partial(mctx.qtransform_completed_by_mix_value, rescale_values=False)
            if cfg.algorithm == "gumbel"
            else functools.partial(mctx.qtransform_by_min_max, min_value=-1.0, max_value=1.0)
        )
    if qtransform is not None:
        common["qtransform"] = qtransform
    if cfg.algorithm == "gumbel":
        return mctx.gumbel_muzero_policy(
            **common, max_num_considered_actions=cfg.max_num_considered_actions, gumbel_scale=cfg.gumbel_scale
        )
    return mctx.muzero_policy(
        **common,
        dirichlet_fraction=cfg.dirichlet_fraction,
        dirichlet_alpha=cfg.dirichlet_alpha,
        pb_c_init=cfg.pb_c_init,
        pb_c_base=cfg.pb_c_base,
        temperature=cfg.temperature,
    )


def _token_output(out, slots: Array, num_actions: int) -> SearchOutput:
    """mctx's output over K slots -> token ids and action weights over all A tokens."""
    batch = slots.shape[0]
    rows = jnp.arange(batch)
    valid = slots >= 0
    action = slots[rows, out.action]
    weights = jnp.zeros((batch, num_actions), jnp.float32)
    weights = weights.at[rows[:, None], jnp.where(valid, slots, 0)].add(jnp.where(valid, out.action_weights, 0.0))
    return SearchOutput(
        action=action.astype(jnp.int32),
        action_weights=weights,
        root_value=out.search_tree.node_values[:, 0],
        search_tree=out.search_tree,
    )
