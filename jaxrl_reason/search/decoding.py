"""Test-time search: one calling convention for every way of spending compute on a response.

    result = jr.decode(model, params, env, states, key, method="best_of_n", n=8, selection="majority")

Methods (``method_kwargs`` in brackets):

* ``"greedy"``: argmax of the policy at every token.
* ``"sample"`` [``temperature=1.0``]: sample the policy.
* ``"best_of_n"`` [``n``, ``selection="majority"|"orm"|"prm"|"verifier"``, ``temperature``, ``prm_fn``,
  ``prm_reduce="min"|"product"``, ``answer_id``]: n samples per problem, then pick one by majority
  vote over the extracted answers (token spans after the answer marker, compared as token arrays),
  by the value head at the final state (ORM), by a process reward over every prefix (PRM: min or
  product; default PRM = the value head mapped to [0, 1]), or by the task's verifier (the first sample it
  accepts: only on tasks whose check needs no stored answer, e.g. countdown; ``with_verifier`` is set).
* ``"beam"`` [``beam_width``, ``expand``, ``step_id``, ``temperature``]: beam search. Token level (no
  ``step_id``): each beam proposes its ``expand`` most probable legal tokens; candidates are scored by
  the value head; the best ``beam_width`` survive. Step level (``step_id`` = the token that ends a
  reasoning step, e.g. ``","``; one-player tasks): each beam samples ``expand`` continuations up to
  the end of its next step, the value head (a PRM) scores them at the step boundary, the best
  ``beam_width`` survive — PRM beam search as in the test-time-compute literature.
* ``"lookahead"`` [``width``, ``depth``, ``use_reward``]: at each token, roll each of the ``width`` most
  probable tokens out greedily for ``depth - 1`` more tokens and play the one whose rollout scores best
  (rewards on the way, mover's sign, plus the value head at the end).
* ``"mcts"`` [any :func:`jr.mcts_policy` keyword, e.g. ``num_simulations``]: a search at every token.
* ``"step_mcts"`` [any :func:`jr.step_mcts_policy` keyword: ``num_simulations=16``, ``num_candidates=8``,
  ``max_step_length=8``, ``max_depth``, ``step_ids``, ``value_fn``, ...]: a search over reasoning steps at
  every step; the chosen step is played whole. One-player tasks.

**The verifier at test time.** ``lookahead``, ``mcts`` and ``step_mcts`` look ahead through ``env.step``, whose
reward is the task's verifier. On tasks whose reward compares with a stored answer (``env.spec.reward_needs_answer``:
addition, sort, letter-count) that would be an answer oracle, so there they never see a reward
(``use_reward=False``, the default there: finished responses are judged by the value head), and asking for
``use_reward=True`` raises. On tasks whose check needs only the problem (countdown, games) they use it by
default, and the result says so: ``DecodeResult.with_verifier``. The other methods never read a reward.

All return a :class:`DecodeResult` with ``tokens_generated`` (every token the method generated or
evaluated beyond the prompt: candidates, rollouts, search simulations) and ``flops`` (network FLOPs
as computed, by the model's FLOP formula). Everything is pure and jittable with the method and its
integer arguments static.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.envs.tasks.base import extract_answer, response_window
from jaxrl_reason.models.flops import forward_flops_per_token
from jaxrl_reason.search.config import verifier_allowed
from jaxrl_reason.search.mcts import _last, mcts_policy
from jaxrl_reason.search.on_mesh import per_row
from jaxrl_reason.search.step_mcts import play_step, step_mcts_policy
from jaxrl_reason.types import Array, EnvState, Params, PRNGKey

METHODS = ("greedy", "sample", "best_of_n", "beam", "lookahead", "mcts", "step_mcts")


@struct.dataclass
class DecodeResult:
    """What :func:`decode` returns (leading axis B)."""

    final_state: EnvState  # [B] the chosen episode's final state
    tokens: Array  # [B, L] int32: its tokens (prompt + response)
    response_length: Array  # [B] int32: tokens in the chosen response
    returns: Array  # [B, P] float32: rewards summed over the chosen episode (the verifier's at the end)
    tokens_generated: Array  # [B] int32: all tokens generated or evaluated beyond the prompt
    flops: Array  # [B] float32: network FLOPs spent
    scores: Any = None  # [B, N] float32 candidate scores (best_of_n), else None
    #: whether the method read the env's reward (its verifier) to choose tokens ("search with a verifier")
    with_verifier: bool = struct.field(pytree_node=False, default=False)


# -- FLOPs --------------------------------------------------------------------------------------------------
def _flops_fn(config) -> Callable[[Array], Array]:
    """FLOPs of one token that scores `keys` key slots (linear in keys; traced-friendly)."""
    one, two = forward_flops_per_token(config, 1), forward_flops_per_token(config, 2)
    slope, base = two - one, 2 * one - two
    return lambda keys: base + slope * jnp.asarray(keys, jnp.float32)


# -- helpers ------------------------------------------------------------------------------------------------
def _mask(logits: Array, legal: Array) -> Array:
    return jnp.where(legal, logits, -jnp.inf)


def _step_rows(env: TokenEnv, state: EnvState, action: Array):
    """vmap(env.step) plus the bookkeeping of a live mask."""
    return jax.vmap(env.step)(state, action)


def _value_at_end(model, params, state: EnvState) -> tuple[Array, Array]:
    """(logits [N, A], value [N]) of the network at each row's last token (full forward)."""
    logits, values = model.apply(params, state.tokens)
    last = jnp.maximum(state.length - 1, 0)
    return _last(logits, last), _last(values, last)


def _rollout(
    model,
    params,
    env,
    states,
    key,
    *,
    greedy: bool,
    temperature: float,
    stop_id: int | None = None,
    active: Array | None = None,
):
    """Samples (or argmaxes) rows with a KV cache until they end. Returns final, returns, generated, flops.

    With ``stop_id`` a row also stops right after it emits that token (one reasoning step); rows with
    ``active`` False are left as they are and cost nothing.
    """
    flops = _flops_fn(model.config)
    max_len = model.config.max_length
    logits_all, _, cache = model.prefill(params, states.tokens, states.length)
    logits = _last(logits_all, jnp.maximum(states.length - 1, 0))
    seq = states.tokens.shape[1]  # prefill runs the whole buffer (padding included)
    active = ~states.done if active is None else active & ~states.done
    spent = jnp.where(active, seq * flops(seq), 0.0).astype(jnp.float32)
    batch = states.length.shape[0]
    init = (states, cache, logits, jnp.zeros_like(states.rewards), jnp.zeros((batch,), jnp.int32), spent, key, active)

    def cond(carry):
        return carry[-1].any()

    def body(carry):
        state, cache, logits, returns, gen, spent, key, active = carry
        key, sub = jax.random.split(key)
        masked = _mask(logits, state.legal_action_mask)
        if greedy:
            action = jnp.argmax(masked, axis=-1)
        else:
            action = jax.random.categorical(sub, masked / temperature, axis=-1)
        action = action.astype(jnp.int32)
        nxt = _step_rows(env, state, action)
        if stop_id is not None:  # stopped rows keep their state (finished ones are frozen by the env)
            nxt = jax.tree.map(lambda a, b: jnp.where(active.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), nxt, state)
        pos = jnp.minimum(state.length, max_len - 1)
        logits, _, cache = model.decode(params, cache, action, pos)
        still = active & ~nxt.done
        if stop_id is not None:
            still = still & (action != stop_id)
        return (
            nxt,
            cache,
            logits,
            returns + jnp.where(active[:, None], nxt.rewards, 0.0),
            gen + active,
            spent + active * flops(max_len + 1),
            key,
            still,
        )

    final, _, _, returns, gen, spent, _, _ = jax.lax.while_loop(cond, body, init)
    return final, returns, gen, spent


def _repeat(tree, n: int):
    return jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), tree)


def _result(final, returns, gen, spent, scores=None, with_verifier: bool = False) -> DecodeResult:
    return DecodeResult(
        with_verifier=with_verifier,
        final_state=final,
        tokens=final.tokens,
        response_length=(final.length - final.prompt_length).astype(jnp.int32),
        returns=returns,
        tokens_generated=gen.astype(jnp.int32),
        flops=spent.astype(jnp.float32),
        scores=scores,
    )


# -- methods --------------------------------------------------------------------------------------------------
def _greedy(model, params, env, states, key):
    return _result(*_rollout(model, params, env, states, key, greedy=True, temperature=1.0))


def _sample(model, params, env, states, key, *, temperature: float = 1.0):
    _check_temperature(temperature)
    greedy = temperature == 0  # 0 means argmax in every method
    return _result(
        *_rollout(model, params, env, states, key, greedy=greedy, temperature=1.0 if greedy else temperature)
    )


def _check_temperature(temperature) -> None:
    if isinstance(temperature, (int, float)) and not temperature >= 0:
        raise ValueError(f"temperature must be >= 0 (0: argmax), got {temperature}")


def majority_scores(env: TokenEnv, final: EnvState, n: int, *, answer_id: int) -> Array:
    """[B, n] votes: how many of a row's n candidates give the same answer (token arrays); -1 if none."""
    spec = env.spec
    size = spec.max_length

    def answer(tokens, prompt_length, length):
        window, m = response_window(
            tokens,
            prompt_length,
            length,
            size,
            eos_id=spec.eos_id if spec.eos_id is not None else -1,
            pad_id=spec.pad_id,
        )
        return extract_answer(window, m, answer_id=answer_id, pad_id=spec.pad_id)

    ans, alen, ok = jax.vmap(answer)(final.tokens, final.prompt_length, final.length)
    ans, alen, ok = ans.reshape(-1, n, size), alen.reshape(-1, n), ok.reshape(-1, n)
    same = (ans[:, :, None] == ans[:, None, :]).all(-1) & (alen[:, :, None] == alen[:, None, :])
    votes = (same & ok[:, None, :]).sum(-1)
    return jnp.where(ok, votes, -1).astype(jnp.float32)


def value_prm(model, params) -> Callable[[Array], Array]:
    """The default PRM: ``(value + 1) / 2`` of the state ending at every token: tokens [N, L] -> [N, L]."""

    def prm(tokens):
        return (model.apply(params, tokens)[1] + 1.0) / 2.0

    return prm


def _best_of_n(
    model,
    params,
    env,
    states,
    key,
    *,
    n: int = 4,
    selection: str = "majority",
    temperature: float = 1.0,
    prm_fn: Callable[[Array], Array] | None = None,
    prm_reduce: str = "min",
    answer_id: int | None = None,
):
    if selection not in ("majority", "orm", "prm", "verifier"):
        raise ValueError(f"selection must be 'majority', 'orm', 'prm' or 'verifier', got {selection!r}")
    if selection == "verifier":
        verifier_allowed(env, True)  # raises on an answer oracle
    if prm_reduce not in ("min", "product"):
        raise ValueError(f"prm_reduce must be 'min' or 'product', got {prm_reduce!r}")
    batch = states.length.shape[0]
    final, returns, gen, spent = _rollout(
        model, params, env, _repeat(states, n), key, greedy=False, temperature=temperature
    )
    flops = _flops_fn(model.config)
    seq = final.tokens.shape[1]
    if selection == "majority":
        if answer_id is None:
            answer_id = getattr(getattr(env, "tokenizer", None), "answer_id", None)
        if answer_id is None:
            raise ValueError("selection='majority' needs answer_id= (the env has no tokenizer.answer_id)")
        scores = majority_scores(env, final, n, answer_id=answer_id)
    elif selection == "verifier":
        scores = returns.reshape(batch, n)
    elif selection == "orm":
        _, value = _value_at_end(model, params, final)
        scores = value.reshape(batch, n)
        spent = spent + seq * flops(seq)
    else:
        per_pos = (prm_fn or value_prm(model, params))(final.tokens)  # [B*n, L]
        idx = jnp.arange(seq)[None]
        step = (idx >= final.prompt_length[:, None]) & (idx < final.length[:, None])
        if prm_reduce == "min":
            s = jnp.where(step, per_pos, jnp.inf).min(-1)
            s = jnp.where(step.any(-1), s, 0.0)
        else:
            s = jnp.where(step, jnp.log(jnp.clip(per_pos, 1e-9, 1.0)), 0.0).sum(-1)
        scores = s.reshape(batch, n)
        if prm_fn is None:
            spent = spent + seq * flops(seq)
    pick = jnp.argmax(scores, axis=1)
    chosen = jnp.arange(batch) * n + pick
    take = functools.partial(jax.tree.map, lambda x: x[chosen])
    per_row = lambda x: x.reshape(batch, n).sum(1)  # noqa: E731
    return _result(
        take(final), returns[chosen], per_row(gen), per_row(spent), scores, with_verifier=selection == "verifier"
    )


def _beam(
    model,
    params,
    env,
    states,
    key,
    *,
    beam_width: int = 4,
    expand: int = 4,
    step_id: int | None = None,
    temperature: float | None = None,
):
    if step_id is None and temperature is not None:
        raise ValueError(
            "temperature applies to step-level beam search (step_id=...) only; token beams take the top tokens"
        )
    if step_id is not None:
        temperature = 1.0 if temperature is None else temperature
        _check_temperature(temperature)
        return _step_beam(
            model,
            params,
            env,
            states,
            key,
            beam_width=beam_width,
            expand=expand,
            step_id=step_id,
            temperature=temperature,
        )
    del key
    batch, width, exp = states.length.shape[0], int(beam_width), int(expand)
    seq = states.tokens.shape[1]
    flops = _flops_fn(model.config)
    player = states.current_player
    logits, _ = _value_at_end(model, params, states)
    beams = _repeat(states, width)  # [B*W]
    score = jnp.tile(jnp.where(jnp.arange(width) == 0, 0.0, -jnp.inf), batch)  # one live beam at the start
    init = (
        beams,
        _repeat(logits, width),
        score,
        jnp.zeros((batch * width, states.rewards.shape[-1])),
        jnp.zeros((batch,), jnp.int32),
        seq * flops(seq) * jnp.ones((batch,)),
    )

    def cond(carry):
        beams, _, score, *_ = carry
        return ~(beams.done | ~jnp.isfinite(score)).all()

    def body(carry):
        beams, logits, score, returns, gen, spent = carry
        top, tok = jax.lax.top_k(_mask(logits, beams.legal_action_mask), exp)  # [B*W, E]
        done = jnp.broadcast_to(beams.done[:, None], top.shape)
        # A finished beam stays as one candidate with its score; illegal/absent proposals are dropped.
        ok = jnp.isfinite(score)[:, None] & jnp.where(done, jnp.arange(exp) == 0, jnp.isfinite(top))
        flat = lambda x: x.reshape(-1, *x.shape[2:])  # noqa: E731
        parents = _repeat(beams, exp)
        children = _step_rows(env, parents, flat(jnp.where(ok, tok, 0)).astype(jnp.int32))
        c_logits, c_value = _value_at_end(model, params, children)
        sign = jnp.where(children.current_player == jnp.repeat(jnp.repeat(player, width), exp), 1.0, -1.0)
        c_score = jnp.where(flat(done), jnp.repeat(score, exp), sign * c_value)
        c_score = jnp.where(flat(ok), c_score, -jnp.inf).reshape(batch, width * exp)
        new_score, pick = jax.lax.top_k(c_score, width)  # [B, W]
        idx = (jnp.arange(batch)[:, None] * width * exp + pick).reshape(-1)
        live_new = (flat(ok) & ~flat(done)).reshape(batch, -1).sum(1)
        returns = _repeat(returns, exp)[idx] + children.rewards[idx]
        return (
            jax.tree.map(lambda x: x[idx], children),
            c_logits[idx],
            new_score.reshape(-1),
            returns,
            gen + live_new,
            spent + live_new * seq * flops(seq),
        )

    beams, _, score, returns, gen, spent = jax.lax.while_loop(cond, body, init)
    best = jnp.arange(batch) * width + jnp.argmax(score.reshape(batch, width), axis=1)
    return _result(jax.tree.map(lambda x: x[best], beams), returns[best], gen, spent, score.reshape(batch, width))


def _step_beam(model, params, env, states, key, *, beam_width: int, expand: int, step_id: int, temperature: float):
    """Step-level beam search: each beam samples `expand` continuations to the end of its next step (the
    token `step_id`, or the end of the episode), the value head (a PRM) scores each candidate at its
    step boundary, and the best `beam_width` survive. One-player tasks."""
    if env.spec.num_players != 1:
        raise ValueError(
            f"step-level beam search (step_id=...) is for one-player tasks, got {env.spec.num_players} players"
        )
    batch, width, exp = states.length.shape[0], int(beam_width), int(expand)
    seq = states.tokens.shape[1]
    flops = _flops_fn(model.config)
    first = jnp.tile(jnp.arange(exp) == 0, batch * width)  # one copy of a finished beam stays a candidate
    init = (
        _repeat(states, width),
        jnp.tile(jnp.where(jnp.arange(width) == 0, 0.0, -jnp.inf), batch),  # one live beam at the start
        jnp.zeros((batch * width, states.rewards.shape[-1])),
        jnp.zeros((batch,), jnp.int32),
        jnp.zeros((batch,), jnp.float32),
        key,
    )

    def cond(carry):
        beams, score, *_ = carry
        return ~(beams.done | ~jnp.isfinite(score)).all()

    def body(carry):
        beams, score, returns, gen, spent, key = carry
        key, sub = jax.random.split(key)
        parents, p_score = _repeat(beams, exp), jnp.repeat(score, exp)
        ok = jnp.isfinite(p_score) & (~parents.done | first)
        grow = ok & ~parents.done
        children, c_returns, c_gen, c_spent = _rollout(
            model, params, env, parents, sub, greedy=False, temperature=temperature, stop_id=step_id, active=grow
        )
        _, value = _value_at_end(model, params, children)  # the PRM's score at the step boundary
        c_score = jnp.where(ok, jnp.where(parents.done, p_score, value), -jnp.inf).reshape(batch, width * exp)
        new_score, pick = jax.lax.top_k(c_score, width)
        idx = (jnp.arange(batch)[:, None] * width * exp + pick).reshape(-1)
        per_problem = lambda x: x.reshape(batch, -1).sum(1)  # noqa: E731
        return (
            jax.tree.map(lambda x: x[idx], children),
            new_score.reshape(-1),
            jnp.repeat(returns, exp, axis=0)[idx] + c_returns[idx],
            gen + per_problem(c_gen),
            spent + per_problem(c_spent) + per_problem(grow) * seq * flops(seq),
            key,
        )

    beams, score, returns, gen, spent, _ = jax.lax.while_loop(cond, body, init)
    best = jnp.arange(batch) * width + jnp.argmax(score.reshape(batch, width), axis=1)
    return _result(jax.tree.map(lambda x: x[best], beams), returns[best], gen, spent, score.reshape(batch, width))


def _lookahead(model, params, env, states, key, *, width: int = 4, depth: int = 2, use_reward: bool = True):
    del key
    batch, wdt, dep = states.length.shape[0], int(width), int(depth)
    seq = states.tokens.shape[1]
    flops = _flops_fn(model.config)
    init = (states, jnp.zeros_like(states.rewards), jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,)))

    def cond(carry):
        return ~carry[0].done.all()

    def body(carry):
        state, returns, gen, spent = carry
        logits, _ = _value_at_end(model, params, state)
        top, tok = jax.lax.top_k(_mask(logits, state.legal_action_mask), wdt)  # [B, W]
        mover = jnp.repeat(state.current_player, wdt)
        sim = _step_rows(env, _repeat(state, wdt), tok.reshape(-1).astype(jnp.int32))
        total = jnp.take_along_axis(sim.rewards, mover[:, None], axis=1)[:, 0]
        for _ in range(dep - 1):  # greedy continuation (depth is small and static)
            lg, _ = _value_at_end(model, params, sim)
            nxt = _step_rows(env, sim, jnp.argmax(_mask(lg, sim.legal_action_mask), -1).astype(jnp.int32))
            total = total + jnp.take_along_axis(nxt.rewards, mover[:, None], axis=1)[:, 0]
            sim = nxt
        _, value = _value_at_end(model, params, sim)
        value = jnp.where(sim.current_player == mover, value, -value)
        if use_reward:
            value = total + jnp.where(sim.done, 0.0, value)  # the verifier's reward of finished rollouts
        score = jnp.where(jnp.isfinite(top).reshape(-1), value, -jnp.inf)
        choice = jnp.take_along_axis(tok, jnp.argmax(score.reshape(batch, wdt), 1)[:, None], 1)[:, 0]
        live = ~state.done
        nxt = _step_rows(env, state, choice.astype(jnp.int32))
        evals = 1 + wdt * dep  # forwards per step: the prior, then depth per candidate
        return nxt, returns + nxt.rewards, gen + live * wdt * dep, spent + live * evals * seq * flops(seq)

    final, returns, gen, spent = jax.lax.while_loop(cond, body, init)
    return _result(final, returns, gen, spent, with_verifier=use_reward)


def _mcts(model, params, env, states, key, *, num_simulations: int = 32, **mcts_kwargs):
    flops = _flops_fn(model.config)
    max_len = model.config.max_length
    evaluation = mcts_kwargs.get("evaluation", "kv")
    max_depth = int(mcts_kwargs.get("max_depth", 6))
    _, _, cache = model.prefill(params, states.tokens, states.length)
    batch = states.length.shape[0]
    seq = states.tokens.shape[1]  # prefill runs the whole buffer (padding included)
    spent = jnp.full(states.length.shape, seq * flops(seq), jnp.float32)
    per_sim = {
        "kv": flops(max_len + max_depth + 1),
        "window": max_depth * flops(max_len + max_depth),
        "full": states.tokens.shape[1] * flops(states.tokens.shape[1]),
    }[evaluation]
    init = (states, cache, jnp.zeros_like(states.rewards), jnp.zeros((batch,), jnp.int32), spent, key)

    def cond(carry):
        return ~carry[0].done.all()

    def body(carry):
        state, cache, returns, gen, spent, key = carry
        key, sub = jax.random.split(key)
        out = mcts_policy(model, params, env, state, sub, num_simulations=num_simulations, cache=cache, **mcts_kwargs)
        live = ~state.done
        nxt = _step_rows(env, state, out.action)
        pos = jnp.minimum(state.length, max_len - 1)
        _, _, cache = model.decode(params, cache, out.action, pos)
        cost = num_simulations * per_sim + flops(max_len + 1) * 2  # simulations, root token, cache update
        return nxt, cache, returns + nxt.rewards, gen + live * (num_simulations + 1), spent + live * cost, key

    final, _, returns, gen, spent, _ = jax.lax.while_loop(cond, body, init)
    return _result(final, returns, gen, spent, with_verifier=bool(mcts_kwargs.get("use_reward", True)))


def step_search_cost(tree, *, num_candidates: int, max_step_length: int) -> tuple[Array, Array, Array]:
    """What one step search spent, from its mctx tree (nodes :class:`StepNode`), per row [B]:
    ``(sampled, evaluated, rows)``: candidate tokens drawn at every expanded node, tokens of the chosen steps
    evaluated again at expansion, and the sampling loops' network rows (calls x C; the first token of
    each candidate comes from the node's own evaluation) plus the expansions' ``S`` tokens each."""
    emb = tree.embeddings
    expanded = tree.node_visits > 0  # [B, N]
    sampled = jnp.where(expanded, emb.step_length.sum(-1), 0).sum(-1)
    parent = jnp.maximum(tree.parents, 0)
    action = jnp.maximum(tree.action_from_parent, 0)
    parent_lengths = jnp.take_along_axis(emb.step_length, parent[..., None], axis=1)  # [B, N, C]
    step = jnp.take_along_axis(parent_lengths, action[..., None], axis=2)[..., 0]
    below_root = expanded & (tree.parents >= 0)
    evaluated = jnp.where(below_root, step, 0).sum(-1)
    rows = jnp.where(expanded, emb.evaluations, 0).sum(-1) * num_candidates + below_root.sum(-1) * max_step_length
    return sampled.astype(jnp.int32), evaluated.astype(jnp.int32), rows


def _step_mcts(
    model,
    params,
    env,
    states,
    key,
    *,
    num_simulations: int = 16,
    num_candidates: int = 8,
    max_step_length: int = 8,
    **step_kwargs,
):
    flops = _flops_fn(model.config)
    seq = states.tokens.shape[1]
    keys = seq + int(step_kwargs.get("max_depth", 4)) * max_step_length + max_step_length  # prefix, path, step
    batch = states.length.shape[0]
    init = (states, jnp.zeros_like(states.rewards), jnp.zeros((batch,), jnp.int32), jnp.zeros((batch,)), key)
    size = dict(num_candidates=num_candidates, max_step_length=max_step_length)

    def cond(carry):
        return ~carry[0].done.all()

    def body(carry):
        state, returns, gen, spent, key = carry
        key, sub = jax.random.split(key)
        out = step_mcts_policy(model, params, env, state, sub, num_simulations=num_simulations, **size, **step_kwargs)
        nxt, rewards = play_step(env, state, out.step_tokens, out.step_length)
        sampled, evaluated, rows = step_search_cost(out.search_tree, **size)
        live = ~state.done
        cost = seq * flops(seq) + flops(seq) + rows * flops(keys)  # prefix, root token, simulations
        return nxt, returns + rewards, gen + live * (sampled + evaluated), spent + live * cost, key

    final, returns, gen, spent, _ = jax.lax.while_loop(cond, body, init)
    return _result(final, returns, gen, spent, with_verifier=bool(step_kwargs.get("use_reward", True)))


_METHODS = {
    "greedy": _greedy,
    "sample": _sample,
    "best_of_n": _best_of_n,
    "beam": _beam,
    "lookahead": _lookahead,
    "mcts": _mcts,
    "step_mcts": _step_mcts,
}


def decode(
    model,
    params: Params,
    env: TokenEnv,
    states: EnvState,
    key: PRNGKey,
    *,
    method: str = "greedy",
    mesh: jax.sharding.Mesh | None = None,
    **method_kwargs,
) -> DecodeResult:
    """Finishes every episode in `states` [B] with a test-time method; pure (jit with method static).

    Args:
      model: ``jr.PolicyValueTransformer`` (or anything with ``apply/prefill/decode/extend``).
      params: its parameters.
      env: the token MDP.
      states: [B] states to continue (usually ``vmap(env.init)`` or ``init_from_problem``).
      key: PRNG key.
      method: one of ``METHODS``; ``method_kwargs`` are that method's options (module docstring); under jit,
        ``method`` and the options that set shapes or branches (``n``, ``num_simulations``, ``use_reward``, ...)
        are static.
      mesh: decode each row on its own with key ``split(key, B)[b]``, the rows split over this mesh's devices
        (:mod:`jaxrl_reason.search.on_mesh`): the result does not depend on the mesh; ``None``: one batch.

    Returns:
      :class:`DecodeResult` with the chosen episodes and the compute spent per row.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if states.tokens.ndim != 2:
        raise ValueError(f"states must be batched: tokens [B, L], got shape {states.tokens.shape}")
    if method in ("lookahead", "mcts", "step_mcts"):
        method_kwargs = {**method_kwargs, "use_reward": verifier_allowed(env, method_kwargs.get("use_reward"))}

    def run(params, states, key):
        return _METHODS[method](model, params, env, states, key, **method_kwargs)

    return run(params, states, key) if mesh is None else per_row(run, mesh, params, states, key)
