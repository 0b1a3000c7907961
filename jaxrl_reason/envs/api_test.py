"""Conformance test every token env must pass: ``jr.api_test(env)``.

Runs a batch of random legal-action episodes under ``jit(vmap(step))`` and checks, step by step:
dtypes and shapes; determinism for a fixed key; jit == eager; the token buffer only grows by the
played action; finished episodes stay frozen with zero reward; the legal mask is all True at terminal
states; every episode ends within ``max_length`` steps; illegal and out-of-range actions end the
episode with the env's penalty; two-player rewards are zero-sum. For reasoning tasks it also checks
that ``verify`` agrees with ``score_text`` on every finished episode, that problem dicts round-trip
through JSON, and that demonstrations earn reward 1 through the token path.

Raises AssertionError naming the first broken rule.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.types import EnvState, assert_env_state


def _row(tree, i):
    return jax.tree.map(lambda x: np.asarray(x)[i], tree)


def _same(a, b) -> bool:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb, strict=True))


def _check(cond, env, msg):
    if not cond:
        raise AssertionError(f"api_test({env.spec.env_id}): {msg}")


def api_test(env, *, num_episodes: int = 16, seed: int = 0, sparse_rewards: bool = True) -> None:
    """Checks that `env` obeys the token-MDP contract (see module docstring).

    Args:
      env: the env to test (e.g. ``jr.make("countdown-v0")``).
      num_episodes: batch of random episodes to play.
      seed: PRNG seed of problems and actions.
      sparse_rewards: also require zero rewards on transitions that do not end the episode.
    """
    spec = env.spec
    _check(spec.vocab_size >= spec.num_actions > 0, env, f"bad sizes in {spec}")
    _check(spec.max_length > spec.max_prompt_length > 0, env, f"bad lengths in {spec}")
    _check(spec.num_players in (1, 2), env, f"num_players must be 1 or 2, got {spec.num_players}")

    key = jax.random.PRNGKey(seed)
    keys = jax.random.split(key, num_episodes)
    init = jax.jit(jax.vmap(env.init))
    step = jax.jit(jax.vmap(env.step))

    state = init(keys)
    assert_env_state(state, spec, batch=(num_episodes,))
    _check(_same(state, init(keys)), env, "init is not deterministic for a fixed key")
    _check(_same(_row(state, 0), env.init(keys[0])), env, "jitted+vmapped init differs from eager init")
    _check(np.all(np.asarray(state.length) == np.asarray(state.prompt_length)), env, "length != prompt_length at init")
    _check(not np.any(np.asarray(state.done)), env, "an initial state of a random problem is already finished")
    _check(np.all(np.asarray(state.rewards) == 0), env, "nonzero rewards at init")

    _check_illegal(env, state, step)
    _check_problem_roundtrip(env, state)
    _check_demonstrations(env, state)

    rng = np.random.default_rng(seed)
    ended_with = [None] * num_episodes
    for t in range(spec.max_length + 1):
        all_done_before = bool(np.all(np.asarray(state.done)))
        mask = np.asarray(state.legal_action_mask).copy()
        if spec.eos_id is not None:  # odd episodes avoid EOS: they run to the end of the response window
            mask[1::2, spec.eos_id] &= mask[1::2].sum(-1) == 1
        actions = np.array([rng.choice(np.flatnonzero(m)) for m in mask], np.int32)
        nxt = step(state, jnp.asarray(actions))
        if t == 0:
            eager = env.step(_row(state, 0), actions[0])
            _check(_same(_row(nxt, 0), eager), env, "jitted+vmapped step differs from eager step")
        for i in range(num_episodes):
            prev, new = _row(state, i), _row(nxt, i)
            _check_transition(env, prev, new, int(actions[i]), sparse_rewards)
            if new.done and not prev.done:
                ended_with[i] = new
        state = nxt
        if all_done_before:  # finished episodes were stepped once more and stayed frozen
            break
    _check(np.all(np.asarray(state.done)), env, f"episodes did not end within max_length={spec.max_length} steps")
    if spec.eos_id is not None:
        longest = int(np.max(np.asarray(state.length) - np.asarray(state.prompt_length)))
        _check(
            longest <= spec.max_response_length,
            env,
            f"a response ran to {longest} tokens, past spec.max_response_length={spec.max_response_length} "
            "(the window verify reads)",
        )
    if hasattr(env, "score_text"):
        for final in ended_with:
            want = env.score_text(env.problem_to_dict(final.problem), env.response_text(final))
            _check(
                float(final.rewards[0]) == want,
                env,
                f"verify gave {float(final.rewards[0])} but score_text gave {want} for response "
                f"{env.response_text(final)!r}",
            )


def _check_transition(env, prev: EnvState, new: EnvState, action: int, sparse_rewards: bool) -> None:
    spec = env.spec
    rewards = np.asarray(new.rewards)
    _check(np.all(np.isfinite(rewards)), env, f"non-finite rewards {rewards}")
    if prev.done:
        _check(
            _same(prev.replace(rewards=np.zeros_like(prev.rewards)), new), env, "stepping a finished episode changed it"
        )
        _check(np.all(rewards == 0), env, "stepping a finished episode gave a nonzero reward")
        return
    n = int(prev.length)
    _check(int(new.length) == n + 1, env, f"length went {n} -> {int(new.length)} on a live step")
    _check(np.array_equal(new.tokens[:n], prev.tokens[:n]), env, "a step changed earlier tokens")
    _check(int(new.tokens[n]) == action, env, "the played action's token was not appended")
    _check(int(new.prompt_length) == int(prev.prompt_length), env, "prompt_length changed")
    _check(_same(new.problem, prev.problem), env, "the problem changed during the episode")
    if new.done:
        _check(np.all(new.legal_action_mask), env, "legal mask not all True at a terminal state")
        if spec.num_players == 2:
            _check(abs(rewards.sum()) < 1e-6, env, f"two-player terminal rewards not zero-sum: {rewards}")
    else:
        _check(np.any(new.legal_action_mask), env, "a live state has no legal action")
        if sparse_rewards:
            _check(np.all(rewards == 0), env, f"nonzero reward {rewards} on a non-final transition")


def _check_illegal(env, state: EnvState, step) -> None:
    spec = env.spec
    mask = np.asarray(state.legal_action_mask)
    for bad in (-1, spec.num_actions):
        nxt = _row(step(state, jnp.full((mask.shape[0],), bad, jnp.int32)), 0)
        _check(bool(nxt.terminated), env, f"out-of-range action {bad} did not end the episode")
        _check(
            float(nxt.rewards[int(state.current_player[0])]) == spec.illegal_action_penalty,
            env,
            f"out-of-range action {bad}: mover's reward {nxt.rewards} != penalty {spec.illegal_action_penalty}",
        )
    rows = [i for i in range(mask.shape[0]) if not mask[i].all()]
    if rows:
        i = rows[0]
        illegal = int(np.flatnonzero(~mask[i])[0])
        nxt = env.step(_row(state, i), illegal)
        player = int(state.current_player[i])
        _check(bool(nxt.terminated), env, f"illegal action {illegal} did not end the episode")
        _check(
            float(nxt.rewards[player]) == spec.illegal_action_penalty,
            env,
            f"illegal action: mover's reward {np.asarray(nxt.rewards)} != penalty {spec.illegal_action_penalty}",
        )


def _check_problem_roundtrip(env, state: EnvState) -> None:
    if not hasattr(env, "problem_to_dict"):
        return
    for i in range(min(4, state.tokens.shape[0])):
        row = _row(state, i)
        d = json.loads(json.dumps(env.problem_to_dict(row.problem)))
        again = env.init_from_problem(env.problem_from_dict(d))
        _check(_same(again, row), env, f"init_from_problem(problem_from_dict(problem_to_dict(p))) differs for {d}")


def _check_demonstrations(env, state: EnvState) -> None:
    if not hasattr(env, "demonstration"):
        return
    tok = env.tokenizer
    for i in range(min(4, state.tokens.shape[0])):
        row = _row(state, i)
        d = env.problem_to_dict(row.problem)
        demo = env.demonstration(d)
        _check(env.score_text(d, demo) == 1.0, env, f"score_text(demonstration) != 1 for {d}: {demo!r}")
        s = row
        for t in tok.encode(demo) + [tok.eos_id]:
            if s.done:
                break
            s = env.step(s, t)
        _check(float(s.rewards[0]) == 1.0, env, f"demonstration {demo!r} earned {s.rewards} through step()")
