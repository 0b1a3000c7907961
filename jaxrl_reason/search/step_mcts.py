"""Batched MCTS over reasoning steps, on mctx: a node is a partial solution, an action a whole step.

Token search spends its tree on characters; published reasoning searches (rStar-Math, ReST-MCTS*, TS-LLM)
search over *steps* instead, one Python node at a time. Here the whole search is one jitted mctx call over a
batch of problems:

* **Candidates per node.** Expanding a node samples ``C = num_candidates`` continuations from the policy,
  each up to the end of its step: a step ends right after a token of ``step_ids`` (the task's separators,
  e.g. ``","`` and ``";"``, and the answer marker), when the episode ends (EOS, the length limit), or after
  ``S = max_step_length`` tokens (shapes stay static; a longer step is cut there and continues as the next
  one). Sampling runs on KV caches: every candidate attends to the root prefix (encoded once per search)
  and to its node's path K/V (carried in the node), and only its own new tokens are evaluated.
* **Duplicates are merged.** A candidate equal to an earlier slot's (same tokens) is masked out (an invalid
  action for mctx). The prior over the distinct candidates is their sequence log-probability under the
  policy (``prior="logprob"``: the model's probability of that step, however often it was sampled), or the
  log of how often each was sampled (``prior="count"``: the duplicates' mass combined).
* **Leaves** are judged by the value head at the end of the step, or by ``value_fn`` (e.g. a PRM);
  a finished response gets the verifier's reward only where that is allowed (``use_reward``: never on tasks
  whose reward compares with a stored answer, ``env.spec.reward_needs_answer``); otherwise the value
  head (or ``value_fn``) judges it too, as in token MCTS.

The node stores its state, its candidates and its path K/V ``[layers, max_depth * S, G, Dh]``; a simulation
costs ``S`` tokens to evaluate the chosen step plus ``C * (S - 1)`` sampled tokens at most (the sampling loop
stops when every candidate has ended). One-player tasks only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import mctx
from flax import struct

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.models.transformer import LayerSegment
from jaxrl_reason.search.config import SearchConfig, verifier_allowed
from jaxrl_reason.search.mcts import _last, _path_kv_zeros, _run_mctx, encode_prefix
from jaxrl_reason.types import Array, EnvState, Params, PRNGKey, StepSearchOutput

PRIORS = ("logprob", "count")
#: Keyword options of :func:`step_mcts_policy` that go to mctx (as the fields of :class:`SearchConfig`).
MCTX_OPTIONS = (
    "max_num_considered_actions",
    "gumbel_scale",
    "dirichlet_fraction",
    "dirichlet_alpha",
    "pb_c_init",
    "pb_c_base",
    "temperature",
    "rescale_values",
)


@struct.dataclass
class StepNode:
    """What mctx stores per node (leading axis B in the recurrent function, [B, N] in the tree)."""

    state: EnvState  # the node's state
    steps: Array  # [C, S] int32: candidate steps (pad beyond their length)
    step_length: Array  # [C] int32: tokens in each candidate (0 only at a finished node)
    valid: Array  # [C] bool: a distinct candidate (duplicates of an earlier slot are False)
    path_length: Array  # [] int32: tokens from the root to this node
    kv: Any  # (k, v) each [layers, P, G, Dh]: the path's K/V (P = max_depth * S)
    evaluations: Array  # [] int32: network calls of the sampling loop that drew the candidates (each C rows)


@struct.dataclass
class _Shared:
    params: Params
    prefix: Any  # the root prefix's K/V segment (shared by every node)
    root_length: Array  # [B] int32


def default_step_ids(env: TokenEnv) -> tuple[int, ...]:
    """The token ids that end a step in `env`: its tokenizer's ``","`` and ``";"`` (those it has) and its
    answer marker. Raises ValueError for an env without a character tokenizer (pass ``step_ids=`` then)."""
    tok = getattr(env, "tokenizer", None)
    if tok is None:
        raise ValueError(f"{env.spec.env_id} has no tokenizer: pass step_ids= (the token ids that end a step)")
    if not hasattr(tok, "alphabet"):  # a pretrained BPE vocabulary: a token may hold a separator inside it
        raise ValueError(
            f"{env.spec.env_id} runs over a BPE tokenizer, whose tokens need not end at a step separator: "
            "step search needs a character tokenizer, or pass step_ids="
        )
    return tuple(tok.id_of(c) for c in (",", ";") if c in tok.alphabet) + (int(tok.answer_id),)


def _where_rows(live: Array, new, old):
    """Per-row select over two pytrees with leading axis B."""
    return jax.tree.map(lambda a, b: jnp.where(live.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), new, old)


def play_step(env: TokenEnv, states: EnvState, tokens: Array, length: Array) -> tuple[EnvState, Array]:
    """Plays the first ``length`` [B] tokens of ``tokens`` [B, S] in ``states`` [B] (nothing happens to a
    finished state). Returns ``(states, rewards [B, P])``: the new states and the rewards summed on the way."""

    def body(i, carry):
        state, total = carry
        nxt = _where_rows(i < length, jax.vmap(env.step)(state, tokens[:, i]), state)
        return nxt, total + jnp.where((i < length)[:, None], nxt.rewards, 0.0)

    return jax.lax.fori_loop(0, tokens.shape[1], body, (states, jnp.zeros_like(states.rewards)))


def _repeat_segment(segment, n: int):
    """A context segment with each row repeated `n` times (LayerSegment: batch first; stacked: axis 1)."""
    rep = lambda x, axis: jnp.repeat(x, n, axis=axis)  # noqa: E731
    if isinstance(segment, LayerSegment):
        return jax.tree.map(lambda x: rep(x, 0), segment)
    k, v, m = segment
    return rep(k, 1), rep(v, 1), rep(m, 0)


def _path_segment(kv, path_length: Array):
    """A node's path K/V ``[B, layers, P, G, Dh]`` as a stacked ``extend`` segment masked to its tokens."""
    k, v = kv
    return jnp.moveaxis(k, 0, 1), jnp.moveaxis(v, 0, 1), jnp.arange(k.shape[2])[None] < path_length[:, None]


def _draw(key, state: EnvState, logits: Array, active: Array, temperature: float, pad_id: int):
    """One token per row from the legal-masked policy: (token [N], its log-prob at temperature 1 [N])."""
    masked = jnp.where(state.legal_action_mask, logits.astype(jnp.float32), -jnp.inf)
    if temperature == 0:
        token = jnp.argmax(masked, axis=-1)
    else:
        token = jax.random.categorical(key, masked / temperature, axis=-1)
    log_p = jnp.take_along_axis(jax.nn.log_softmax(masked, axis=-1), token[:, None], axis=1)[:, 0]
    return jnp.where(active, token, pad_id).astype(jnp.int32), jnp.where(active, log_p, 0.0)


def sample_steps(
    model,
    params: Params,
    env: TokenEnv,
    prefix,
    path: tuple,
    state: EnvState,
    logits: Array,
    start: Array,
    key: PRNGKey,
    *,
    num_candidates: int,
    max_step_length: int,
    step_ids: Sequence[int],
    temperature: float = 1.0,
):
    """``C`` sampled steps from each of `state` [B], whose next-token `logits` [B, A] are given.

    Every candidate attends to `prefix` (the root's K/V segment) and `path` (the node's stacked path
    segment ``(k, v [layers, B, P, G, Dh], mask [B, P])``); `start` [B] is the position of the step's first
    token. Each candidate is played through ``env.step`` (so only legal tokens are drawn) and ends after a
    token of `step_ids`, at the end of the episode, or after ``S`` tokens. Returns ``(steps [B, C, S] int32,
    lengths [B, C] int32, log_probs [B, C], evaluations [])``: log-probs of the whole step under the
    temperature-1 legal-masked policy; a finished state gives empty steps; ``evaluations`` counts the
    sampling loop's network calls (each on ``B * C`` rows).
    """
    num, size = int(num_candidates), int(max_step_length)
    batch = logits.shape[0]
    pad, max_pos = env.spec.pad_id, model.config.max_length - 1
    ids = jnp.asarray(tuple(step_ids), jnp.int32)
    rep = lambda x: jnp.repeat(x, num, axis=0)  # noqa: E731
    segs = (_repeat_segment(prefix, num), _repeat_segment(path, num))
    state, logits, start = jax.tree.map(rep, state), rep(logits), rep(start)
    rows = batch * num

    def advance(walk, logits, key, i):  # draw token i of every live candidate and play it
        state, tokens, log_p, length, active = walk
        token, lp = _draw(key, state, logits, active, temperature, pad)
        # Sampling needs the legal masks and the ends, not the rewards: dropping them lets XLA drop the verifier.
        nxt = _where_rows(active, jax.vmap(env.step)(state, token).replace(rewards=state.rewards), state)
        ends = jnp.isin(token, ids) | nxt.done
        return nxt, tokens.at[:, i].set(token), log_p + lp, length + active, active & ~ends

    def evaluate(i, walk, logits, own_k, own_v):  # token i-1 against the prefix, the path and the step so far
        own = (own_k, own_v, jnp.broadcast_to(jnp.arange(size)[None] < (i - 1), (rows, size)))
        pos = jnp.minimum(start + i - 1, max_pos)[:, None]
        out, _, (k, v) = model.extend(params, walk[1][:, i - 1, None], pos, context=(*segs, own))
        own_k = jax.lax.dynamic_update_index_in_dim(own_k, k[:, :, 0].astype(own_k.dtype), i - 1, axis=2)
        own_v = jax.lax.dynamic_update_index_in_dim(own_v, v[:, :, 0].astype(own_v.dtype), i - 1, axis=2)
        return out[:, 0].astype(logits.dtype), own_k, own_v

    def cond(carry):
        return (carry[0] < size) & carry[1][4].any()

    def body(carry):  # one env.step and one network call in the loop: each is compiled once
        i, walk, logits, own_k, own_v, key = carry
        key, sub = jax.random.split(key)
        logits, own_k, own_v = jax.lax.cond(i > 0, evaluate, lambda _, __, *rest: rest, i, walk, logits, own_k, own_v)
        return i + 1, advance(walk, logits, sub, i), logits, own_k, own_v, key

    walk = (state, jnp.full((rows, size), pad, jnp.int32), jnp.zeros((rows,)), jnp.zeros((rows,), jnp.int32))
    path_k = segs[1][0]  # [layers, rows, P, G, Dh]: the own-step buffer is derived from it (not a constant)
    zero = jnp.broadcast_to(path_k[:, :, :1] * 0, (path_k.shape[0], rows, size, *path_k.shape[3:]))
    init = (jnp.int32(0), (*walk, ~state.done), logits.astype(jnp.float32), zero, zero, key)
    i, walk, _, _, _, _ = jax.lax.while_loop(cond, body, init)
    _, tokens, log_p, length, _ = walk
    steps = tokens.reshape(batch, num, size)
    return steps, length.reshape(batch, num), log_p.reshape(batch, num), jnp.maximum(i - 1, 0)


def merge_candidates(steps: Array, lengths: Array, log_p: Array, prior: str = "logprob") -> tuple[Array, Array]:
    """Duplicates merged: ``(valid [B, C], prior_logits [B, C])`` of candidates ``steps [B, C, S]``.

    A candidate equal (tokens and length) to an earlier slot's is invalid (prior ``-inf``). ``prior``:
    ``"logprob"``, the distinct step's sequence log-probability `log_p`; ``"count"``, the log of how many
    slots sampled it (every duplicate's mass added to the first)."""
    same = (steps[:, :, None] == steps[:, None, :]).all(-1) & (lengths[:, :, None] == lengths[:, None, :])
    num = steps.shape[1]
    valid = ~(same & jnp.tril(jnp.ones((num, num), bool), k=-1)).any(-1)
    logits = log_p if prior == "logprob" else jnp.log(same.sum(-1).astype(jnp.float32))
    return valid, jnp.where(valid, logits.astype(jnp.float32), -jnp.inf)


def _write_path(kv, new, path_length: Array):
    """The node's path K/V ``[B, layers, P, G, Dh]`` with a step's ``k, v [layers, B, S, G, Dh]`` written at
    ``path_length + j`` (entries past ``P`` are dropped; those past the step's length are masked later)."""
    rows = jnp.arange(path_length.shape[0])[:, None]
    idx = path_length[:, None] + jnp.arange(new[0].shape[2])[None]  # [B, S]
    return tuple(
        old.at[rows, :, idx].set(jnp.transpose(x, (1, 2, 0, 3, 4)).astype(old.dtype), mode="drop")
        for old, x in zip(kv, new, strict=True)
    )


def _make_recurrent_fn(model, env: TokenEnv, *, sampling: dict, value_fn, use_reward: bool, prior: str):
    """The mctx recurrent function ``(shared, key, slot [B], StepNode [B]) -> (output, child node)``."""
    max_pos = model.config.max_length - 1
    size = int(sampling["max_step_length"])

    def recurrent_fn(shared: _Shared, key, action, node: StepNode):
        rows = jnp.arange(action.shape[0])
        step, n = node.steps[rows, action], node.step_length[rows, action]
        child, rewards = play_step(env, node.state, step, n)
        # The chosen step's own tokens against the prefix and the path: the child's prior, value and K/V.
        pos = jnp.minimum(shared.root_length[:, None] + node.path_length[:, None] + jnp.arange(size), max_pos)
        path = _path_segment(node.kv, node.path_length)
        logits, values, new = model.extend(shared.params, step, pos, context=(shared.prefix, path))
        last = jnp.maximum(n - 1, 0)
        logits, value = _last(logits, last), _last(values, last).astype(jnp.float32)
        if value_fn is not None:
            value = jnp.asarray(value_fn(child), jnp.float32)
        reward = rewards[:, 0] if use_reward else jnp.where(child.done, value, 0.0)
        kv, path_length = _write_path(node.kv, new, node.path_length), node.path_length + n
        steps, lengths, log_p, evals = sample_steps(
            model,
            shared.params,
            env,
            shared.prefix,
            _path_segment(kv, path_length),
            child,
            logits,
            shared.root_length + path_length,
            key,
            **sampling,
        )
        valid, prior_logits = merge_candidates(steps, lengths, log_p, prior)
        out = mctx.RecurrentFnOutput(
            reward=reward.astype(jnp.float32),
            discount=jnp.where(child.done, 0.0, 1.0).astype(jnp.float32),
            prior_logits=prior_logits,
            value=jnp.where(child.done, 0.0, value),
        )
        every = jnp.broadcast_to(evals, rows.shape)
        return out, StepNode(child, steps, lengths, valid, path_length, kv, every)

    return recurrent_fn


def _check(env: TokenEnv, states: EnvState, num_candidates, max_step_length, max_depth, prior, options) -> None:
    spec = env.spec
    if spec.num_players != 1:
        raise ValueError(f"step_mcts_policy is for one-player tasks, got {spec.env_id} with {spec.num_players}")
    if states.tokens.ndim != 2 or states.tokens.shape[1] != spec.max_length:
        raise ValueError(f"states must be batched: tokens [B, {spec.max_length}], got {states.tokens.shape}")
    sizes = (num_candidates, max_step_length, max_depth)
    if any(not isinstance(x, int) or x < 1 for x in sizes):
        raise ValueError(f"num_candidates, max_step_length and max_depth must be ints >= 1, got {sizes}")
    if prior not in PRIORS:
        raise ValueError(f"prior must be one of {PRIORS}, got {prior!r}")
    unknown = sorted(set(options) - set(MCTX_OPTIONS))
    if unknown:
        raise TypeError(f"unknown step search option(s) {unknown}; mctx options: {list(MCTX_OPTIONS)}")


def step_mcts_policy(
    model,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    num_simulations: int,
    num_candidates: int,
    max_step_length: int,
    max_depth: int = 4,
    algorithm: str = "gumbel",
    step_ids: Sequence[int] | None = None,
    value_fn: Callable[[EnvState], Array] | None = None,
    use_reward: bool | None = None,
    prior: str = "logprob",
    candidate_temperature: float = 1.0,
    qtransform: Callable | None = None,
    **options: Any,
) -> StepSearchOutput:
    """Batched MCTS over reasoning steps from `states` [B] (one-player tasks); pure, jit it at the call site.

    Args:
      model: a policy-value network with ``extend`` (``jr.PolicyValueTransformer``); hashable.
      params: its parameters.
      env: the token MDP; candidate steps are played through its ``step``.
      states: [B] root states.
      key: PRNG key.
      num_simulations: simulations per search.
      num_candidates: C steps sampled at every expanded node (duplicates merged).
      max_step_length: S, the most tokens in one step (a longer step is cut and continues as the next).
      max_depth: the deepest node is this many steps below the root (evaluated, not expanded).
      algorithm: ``"gumbel"`` (``mctx.gumbel_muzero_policy``) or ``"muzero"`` (PUCT).
      step_ids: token ids that end a step (default :func:`default_step_ids`: ``","``, ``";"`` and the
        answer marker of the env's tokenizer).
      value_fn: ``value_fn(states [N]) -> [N]`` in [-1, 1] judging a node (e.g. a PRM); default the value
        head at the step's last token.
      use_reward: whether finished responses get the env's reward (its verifier). None: wherever allowed
        (``not env.spec.reward_needs_answer``); True on a task whose reward compares with a stored answer
        raises ValueError. When False a finished response is judged by the value head (or `value_fn`).
      prior: ``"logprob"`` or ``"count"`` (see :func:`merge_candidates`).
      candidate_temperature: sampling temperature of the candidates (0: argmax, all C candidates equal).
      qtransform: an explicit mctx Q transform (overrides ``rescale_values``).
      options: mctx options (``MCTX_OPTIONS``: ``max_num_considered_actions``, ``gumbel_scale``,
        ``dirichlet_*``, ``pb_c_*``, ``temperature``, ``rescale_values``), as in :func:`jr.mcts_policy`.

    Returns:
      :class:`~jaxrl_reason.types.StepSearchOutput`: the chosen step's tokens and length, the search policy
      over the root's C candidates, the candidates, the root value and the mctx tree (nodes are
      :class:`StepNode`).
    """
    _check(env, states, num_candidates, max_step_length, max_depth, prior, options)
    use_reward = verifier_allowed(env, use_reward)
    cfg = SearchConfig(
        num_simulations=num_simulations, top_k=num_candidates, algorithm=algorithm, max_depth=max_depth
    ).replace(**options)
    sampling = dict(
        num_candidates=num_candidates,
        max_step_length=max_step_length,
        step_ids=tuple(default_step_ids(env) if step_ids is None else step_ids),
        temperature=float(candidate_temperature),
    )
    key, sub = jax.random.split(key)
    size = max_depth * max_step_length
    prefix, root = _root(
        model, params, env, states, sub, sampling=sampling, value_fn=value_fn, prior=prior, path_size=size
    )
    recurrent_fn = _make_recurrent_fn(
        model, env, sampling=sampling, value_fn=value_fn, use_reward=use_reward, prior=prior
    )
    shared = _Shared(params=params, prefix=prefix, root_length=states.length)
    out = _run_mctx(cfg, shared, key, root, recurrent_fn, ~root.embedding.valid, qtransform)
    return _output(out, root.embedding)


def _root(model, params, env, states, key, *, sampling: dict, value_fn, prior: str, path_size: int):
    """The prefix's K/V segment (encoded once per search) and mctx's root: its candidates, prior and value."""
    batch = states.tokens.shape[0]
    prefix, logits, value = encode_prefix(model, params, states)
    value = value.astype(jnp.float32) if value_fn is None else jnp.asarray(value_fn(states), jnp.float32)
    zero = _path_kv_zeros(prefix, states.length[0], batch, path_size)
    root_len = jnp.zeros((batch,), jnp.int32)
    path = _path_segment((zero, zero), root_len)
    steps, lengths, log_p, evals = sample_steps(
        model, params, env, prefix, path, states, logits, states.length, key, **sampling
    )
    valid, prior_logits = merge_candidates(steps, lengths, log_p, prior)
    node = StepNode(states, steps, lengths, valid, root_len, (zero, zero), jnp.broadcast_to(evals, (batch,)))
    return prefix, mctx.RootFnOutput(
        prior_logits=prior_logits, value=jnp.where(states.done, 0.0, value), embedding=node
    )


def _output(out, root: StepNode) -> StepSearchOutput:
    rows = jnp.arange(root.steps.shape[0])
    return StepSearchOutput(
        action=out.action.astype(jnp.int32),
        step_tokens=root.steps[rows, out.action],
        step_length=root.step_length[rows, out.action],
        action_weights=jnp.where(root.valid, out.action_weights, 0.0),
        candidates=root.steps,
        candidate_lengths=root.step_length,
        candidate_valid=root.valid,
        root_value=out.search_tree.node_values[:, 0],
        search_tree=out.search_tree,
    )
