"""Test-time decoding: each method against a slow reference or a hand-computed result."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks.base import extract_answer_text
from jaxrl_reason.search.decoding import majority_scores
from tests.test_core import Echo
from tests.test_mcts import CHAIN, CHAIN2, ToyConfig, search

ECHO = Echo()
MODEL = jr.PolicyValueTransformer(
    jr.TransformerConfig.for_env(ECHO.spec, d_model=16, num_heads=2, num_layers=1, mlp_dim=32)
)
PARAMS = MODEL.init(jax.random.key(0))
decode = jax.jit(
    jr.decode,
    static_argnums=(0, 2),
    static_argnames=(
        "method",
        "n",
        "selection",
        "num_simulations",
        "algorithm",
        "top_k",
        "max_depth",
        "beam_width",
        "expand",
        "width",
        "depth",
        "step_id",
        "gumbel_scale",
        "use_reward",
    ),
)


def _echo_states(digits):
    return jax.vmap(ECHO.init_from_problem)(jnp.asarray(digits, jnp.int32))


def _repeat(tree, n):
    return jax.tree.map(lambda x: jnp.repeat(x, n, axis=0), tree)


class CheckableEcho(Echo):
    """Toy task whose check needs only the response (like countdown's): any non-empty answer is accepted."""

    reward_needs_answer = False

    def _check_answer(self, problem, answer, n):
        return n >= 1

    def _check_answer_text(self, d, answer):
        return len(answer) >= 1


def test_best_of_n_by_the_verifier_picks_the_first_accepted_sample_and_says_so():
    n, states, key, env = 4, _echo_states([1, 5, 2, 9]), jax.random.key(5), CheckableEcho()
    res = decode(MODEL, PARAMS, env, states, key, method="best_of_n", n=n, selection="verifier")
    cands = decode(MODEL, PARAMS, env, _repeat(states, n), key, method="sample")  # the same samples
    rewards = np.asarray(cands.returns).reshape(4, n)
    assert 0 < (rewards.max(1) == 1).sum() < 4  # some problems have an accepted sample, some none
    np.testing.assert_array_equal(res.scores, rewards)
    pick = np.argmax(rewards, axis=1) + np.arange(4) * n  # first accepted one (argmax takes the first)
    np.testing.assert_array_equal(res.tokens, cands.tokens[pick])
    np.testing.assert_array_equal(np.asarray(res.returns).reshape(4), rewards.max(1))
    assert res.with_verifier and not decode(MODEL, PARAMS, env, states, key, method="best_of_n", n=2).with_verifier
    with pytest.raises(ValueError, match="stored answer"):
        jr.decode(MODEL, PARAMS, ECHO, states, key, method="best_of_n", n=2, selection="verifier")


def test_greedy_matches_a_full_forward_loop_and_counts_compute():
    states = _echo_states([3, 7])
    res = decode(MODEL, PARAMS, ECHO, states, jax.random.key(0), method="greedy")
    s, apply = states, jax.jit(MODEL.apply)
    for _ in range(ECHO.spec.max_length):  # reference: full forward every token, no cache
        logits, _ = apply(PARAMS, s.tokens)
        logits = logits[jnp.arange(2), s.length - 1]
        s = jax.vmap(ECHO.step)(s, jnp.argmax(jnp.where(s.legal_action_mask, logits, -jnp.inf), -1))
    np.testing.assert_array_equal(res.tokens, s.tokens)
    assert bool(res.final_state.done.all())
    np.testing.assert_array_equal(res.tokens_generated, s.length - s.prompt_length)
    c = MODEL.config
    per_token = c.num_layers * (8 * c.d_model**2 + 4 * c.d_model * c.mlp_dim) + 2 * c.d_model * (c.num_actions + 1)
    attention = c.num_layers * 4 * c.d_model
    # The prefill runs the whole L-token buffer; each decode step scores max_length + 1 slots.
    want = c.max_length * (per_token + attention * c.max_length) + (s.length - s.prompt_length) * (
        per_token + attention * (c.max_length + 1)
    )
    np.testing.assert_allclose(res.flops, want, rtol=1e-6)


@pytest.mark.parametrize("selection", ["majority", "orm", "prm"])
def test_best_of_n_picks_the_best_candidate_by_each_rule(selection):
    n, states, key = 6, _echo_states([1, 5]), jax.random.key(3)
    res = decode(MODEL, PARAMS, ECHO, states, key, method="best_of_n", n=n, selection=selection)
    cands = decode(MODEL, PARAMS, ECHO, _repeat(states, n), key, method="sample")  # the same samples
    tok = ECHO.tokenizer
    if selection == "majority":  # Python reference over the decoded texts
        texts = [
            tok.decode(np.asarray(t)[int(p) : int(ln)])
            for t, p, ln in zip(cands.tokens, cands.final_state.prompt_length, cands.final_state.length, strict=True)
        ]
        answers = [extract_answer_text(x, tok) for x in texts]
        want = [
            [
                -1 if a is None else sum(b == a for b in answers[r * n : (r + 1) * n])
                for a in answers[r * n : (r + 1) * n]
            ]
            for r in range(2)
        ]
    elif selection == "orm":
        values = MODEL.apply(PARAMS, cands.tokens)[1]
        want = values[jnp.arange(2 * n), cands.final_state.length - 1].reshape(2, n)
    else:
        v = (MODEL.apply(PARAMS, cands.tokens)[1] + 1) / 2
        want = [
            [
                min(
                    float(v[i, t])
                    for t in range(int(cands.final_state.prompt_length[i]), int(cands.final_state.length[i]))
                )
                for i in range(r * n, (r + 1) * n)
            ]
            for r in range(2)
        ]
    np.testing.assert_allclose(res.scores, np.asarray(want, np.float32), atol=1e-5)
    pick = np.argmax(np.asarray(res.scores), axis=1) + np.arange(2) * n
    np.testing.assert_array_equal(res.tokens, cands.tokens[pick])
    np.testing.assert_array_equal(res.tokens_generated, cands.tokens_generated.reshape(2, n).sum(1))


def test_majority_vote_compares_answers_as_token_arrays():
    tok = ECHO.tokenizer
    texts = [
        "12" + tok.answer_marker + "7",
        tok.answer_marker + "7" + tok.eos,
        "3" + tok.answer_marker + "3",
        "no marker",
    ]
    states = _echo_states([7, 7, 7, 7])
    tokens = np.array(states.tokens)
    lengths = []
    for i, t in enumerate(texts):
        ids = tok.encode(t)[: ECHO.max_response_length]
        tokens[i, 2 : 2 + len(ids)] = ids
        lengths.append(2 + len(ids))
    final = states.replace(tokens=jnp.asarray(tokens), length=jnp.asarray(lengths, jnp.int32))
    np.testing.assert_array_equal(majority_scores(ECHO, final, 4, answer_id=tok.answer_id), [[2, 2, 1, -1]])


@pytest.mark.parametrize("num_kv_heads", [None, 1])  # 1: multi-query, attention's one-query grouped path
def test_mcts_decoding_with_shared_prefix_equals_full_forward_searches_per_token(num_kv_heads):
    model, params = MODEL, PARAMS
    if num_kv_heads is not None:
        model = jr.PolicyValueTransformer(dataclasses.replace(MODEL.config, num_kv_heads=num_kv_heads))
        params = model.init(jax.random.key(0))
    states, key = _echo_states([2, 9, 4]), jax.random.key(1)
    # echo's reward compares with the stored digit: test-time search is blind to it (both sides)
    kw = dict(num_simulations=8, top_k=6, max_depth=3, algorithm="muzero", use_reward=False)
    res = decode(model, params, ECHO, states, key, method="mcts", **kw)  # KV cache + one token per simulation
    s, k = states, key  # reference: every simulation runs the whole sequence through model.apply
    while not bool(s.done.all()):
        k, sub = jax.random.split(k)
        s = jax.vmap(ECHO.step)(s, search(model, params, ECHO, s, sub, evaluation="full", **kw).action)
    np.testing.assert_array_equal(res.tokens, s.tokens)
    np.testing.assert_array_equal(res.returns[:, 0], s.rewards[:, 0])
    np.testing.assert_array_equal(res.tokens_generated, (s.length - s.prompt_length) * 9)


def test_deterministic_gumbel_mcts_with_one_simulation_is_greedy():
    states = _echo_states([3, 7, 1, 8])
    greedy = decode(MODEL, PARAMS, ECHO, states, jax.random.key(0), method="greedy")
    one = decode(MODEL, PARAMS, ECHO, states, jax.random.key(5), method="mcts", num_simulations=1, gumbel_scale=0.0)
    np.testing.assert_array_equal(one.tokens, greedy.tokens)
    noisy = decode(MODEL, PARAMS, ECHO, _repeat(states, 8), jax.random.key(5), method="mcts", num_simulations=1)
    assert (np.asarray(noisy.tokens) != np.asarray(_repeat(greedy.tokens, 8))).any()  # Gumbel noise samples


@dataclasses.dataclass(frozen=True)
class Scripted:
    """Zero logits; value 1 while the tokens are a prefix of [bos, 2, 0, 1] (Chain's best), else 0."""

    config: ToyConfig

    def apply(self, params, tokens, *, positions=None):
        target = jnp.array([CHAIN.spec.bos_id, 2, 0, 1])
        ok = jnp.cumprod(tokens == target[None, : tokens.shape[1]], axis=1)
        return jnp.zeros((*tokens.shape, self.config.num_actions)), ok.astype(jnp.float32)


def test_beam_and_lookahead_against_hand_computed_outcomes():
    model = Scripted(ToyConfig(num_actions=4, vocab_size=6, max_length=4))
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (2, *x.shape)), CHAIN.init_from_problem(jnp.int32(0)))
    beam = decode(model, {}, CHAIN, states, jax.random.key(0), method="beam", beam_width=2, expand=3)
    np.testing.assert_array_equal(beam.tokens[:, 1:], [[2, 0, 1]] * 2)  # the value head leads the beam
    np.testing.assert_allclose(beam.returns[:, 0], 1.0)
    # Lookahead: rollouts reach the end (values unused) greedily on zero logits (lowest legal token): at the
    # first token it sees [0,0,0] -> 0, [1,1,1] -> 0.3, [2,0,0] -> 0, and plays 1; 3 steps x 3 candidates x depth 3.
    look = decode(model, {}, CHAIN, states, jax.random.key(0), method="lookahead", width=3, depth=3)
    assert np.asarray(look.tokens[:, 1]).tolist() == [1, 1]
    np.testing.assert_allclose(look.returns[:, 0], 0.3, rtol=1e-6)
    np.testing.assert_array_equal(look.tokens_generated, [27, 27])


@dataclasses.dataclass(frozen=True)
class ScriptedSampler(Scripted):
    """Scripted with a (trivial) KV-cache interface: uniform logits, so sampling is uniform over legal tokens."""

    def prefill(self, params, tokens, lengths):
        logits, values = self.apply(params, tokens)
        return logits, values, jnp.zeros(())

    def decode(self, params, cache, action, pos):
        return jnp.zeros((action.shape[0], self.config.num_actions)), jnp.zeros(action.shape), cache


def test_step_level_beam_keeps_the_best_steps_and_stops_at_step_tokens():
    model = ScriptedSampler(ToyConfig(num_actions=4, vocab_size=6, max_length=4))
    states = jax.tree.map(lambda x: jnp.broadcast_to(x, (3, *x.shape)), CHAIN.init_from_problem(jnp.int32(0)))
    # Steps end at token 0. Round 1 samples [0] | [1, ...] | [2, 0] | [2, 1|2, ...]: only [2, 0] keeps the
    # value at 1; round 2 completes it with 1 (0 is illegal after 1, so [2, 0, 0] or [2, 0, 2] score 0).
    res = decode(model, {}, CHAIN, states, jax.random.key(3), method="beam", beam_width=2, expand=16, step_id=0)
    np.testing.assert_array_equal(res.tokens[:, 1:], [[2, 0, 1]] * 3)
    np.testing.assert_allclose(res.returns[:, 0], 1.0)
    np.testing.assert_allclose(res.scores.max(1), 1.0)
    # every candidate of round 1 is 1-3 tokens, round 2 adds one token to each of <= 2 x 16 candidates
    gen = np.asarray(res.tokens_generated)
    assert ((gen >= 16 + 16) & (gen <= 16 * 3 + 32)).all(), gen
    # a step-token that never appears: one round of whole responses, i.e. best-of-16 by the value head
    whole = decode(model, {}, CHAIN, states, jax.random.key(3), method="beam", beam_width=2, expand=16, step_id=3)
    np.testing.assert_array_equal(whole.tokens_generated, [48] * 3)
    with pytest.raises(ValueError, match="one-player tasks"):
        jr.decode(model, {}, CHAIN2, states, jax.random.key(0), method="beam", step_id=0)


def test_unknown_method_and_bad_selection_raise():
    states = _echo_states([1])
    with pytest.raises(ValueError, match="method must be one of"):
        jr.decode(MODEL, PARAMS, ECHO, states, jax.random.key(0), method="nucleus")
    with pytest.raises(ValueError, match="selection must be"):
        jr.decode(MODEL, PARAMS, ECHO, states, jax.random.key(0), method="best_of_n", selection="vote")


def _before_last_answer_digit(env, problems):
    """States whose response is the correct demonstration up to (not including) its last answer character."""
    tok = env.tokenizer
    step = jax.jit(env.step)
    rows = []
    for d in problems:
        state = env.init_from_problem(env.problem_from_dict(d))
        for t in tok.encode(env.demonstration(d))[:-1]:
            state = step(state, t)
        rows.append(state)
    return jax.tree.map(lambda *x: jnp.stack(x), *rows)


def test_test_time_mcts_is_blind_to_a_stored_answer():
    # issue 15: with all-zero params (uniform prior, zero value) a search that read the env's reward found
    # the last digit of every sum (32 of 32); blind to it, it is near chance
    env = jr.make("addition-v0", num_digits=2)
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, "tiny"))
    params = jax.tree.map(jnp.zeros_like, model.init(jax.random.PRNGKey(0)))
    problems = [{"a": 10 + 2 * i, "b": 31 + i} for i in range(32)]
    states = _before_last_answer_digit(env, problems)
    out = jr.decode(model, params, env, states, jax.random.PRNGKey(1), method="mcts", num_simulations=256)
    assert not out.with_verifier
    assert float((out.returns[:, 0] == 1.0).mean()) <= 0.35  # chance: 1 of ~12 tokens, then EOS
    with pytest.raises(ValueError, match="stored answer"):
        jr.decode(model, params, env, states, jax.random.PRNGKey(1), method="mcts", num_simulations=8, use_reward=True)
    with pytest.raises(ValueError, match="stored answer"):
        jr.decode(model, params, env, states, jax.random.PRNGKey(1), method="lookahead", use_reward=True)


def test_countdown_search_may_use_its_checker_and_says_so():
    env = jr.make("countdown-v0", num_numbers=3)
    assert not env.spec.reward_needs_answer
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, "tiny"))
    params = jax.tree.map(jnp.zeros_like, model.init(jax.random.PRNGKey(0)))
    keys = jax.random.split(jax.random.PRNGKey(3), 8)
    problems = [env.problem_to_dict(env.sample_problem(k)) for k in keys]
    states = _before_last_answer_digit(env, problems)
    seen = jr.decode(model, params, env, states, jax.random.PRNGKey(1), method="mcts", num_simulations=64)
    blind = jr.decode(
        model, params, env, states, jax.random.PRNGKey(1), method="mcts", num_simulations=64, use_reward=False
    )
    assert seen.with_verifier and not blind.with_verifier
    # with the checker the search completes the (uniquely determined) last digit; blind it mostly cannot
    assert float((seen.returns[:, 0] == 1.0).mean()) > float((blind.returns[:, 0] == 1.0).mean())
