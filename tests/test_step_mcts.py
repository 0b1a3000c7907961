"""Step MCTS: dense step-reference equivalence, a hand-built step MDP, legal steps, countdown, the answer oracle."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.search.reference import dense_step_mcts_policy
from tests.test_mcts import ToyAttention, ToyConfig, Uniform

# Token ids of the letter-step task.
PAD, BOS, EOS, COMMA, A, B, C, D = range(8)


class Letters(TokenEnv):
    """Prompt [bos]; a response is at most two steps ``x,`` (x a letter) then EOS. A step's letter is any of
    a-d, except ``d`` in the first step (illegal there); after a letter only ``,`` is legal; EOS is legal
    after the first step (the only legal token after two). Reward at the end: 1 for ``b,c,<eos>``, else 0.
    Every step is one of ``a, b, c, d, <eos>``: the step space can be enumerated."""

    def __init__(self, reward_needs_answer=False):
        self._spec = jr.EnvSpec(
            env_id="letters-v0",
            num_actions=8,
            vocab_size=8,
            max_length=6,
            max_prompt_length=1,
            pad_id=PAD,
            bos_id=BOS,
            eos_id=EOS,
            reward_needs_answer=reward_needs_answer,
        )

    @property
    def spec(self):
        return self._spec

    def sample_problem(self, key):
        return jnp.int32(0)

    @staticmethod
    def _mask(steps_done, after_letter):
        ids = jnp.arange(8)
        letters = (ids >= A) & ~((ids == D) & (steps_done == 0)) & (steps_done < 2)
        start = letters | ((ids == EOS) & (steps_done >= 1))
        return jnp.where(after_letter, ids == COMMA, start)

    def _init(self, problem):
        return jr.EnvState(
            tokens=jnp.array([BOS] + [PAD] * 5, jnp.int32),
            length=jnp.int32(1),
            prompt_length=jnp.int32(1),
            current_player=jnp.int32(0),
            legal_action_mask=self._mask(0, False),
            rewards=jnp.zeros((1,), jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            problem=problem,
        )

    def _step(self, state, action):
        resp = state.tokens[1:]
        steps_done = (resp == COMMA).sum()
        over = action == EOS
        good = (resp[:4] == jnp.array([B, COMMA, C, COMMA])).all() & (state.length == 6)
        return state.replace(
            legal_action_mask=self._mask(steps_done, action >= A),
            rewards=jnp.where(over & good, 1.0, 0.0)[None].astype(jnp.float32),
            terminated=over,
            truncated=(state.length >= 6) & ~over,
        )


ENV = Letters()
ALL_STEPS = np.array([[A, COMMA], [B, COMMA], [C, COMMA], [D, COMMA], [EOS, PAD]], np.int32)
ALL_LENGTHS = np.array([2, 2, 2, 2, 1], np.int32)
STEP_IDS = (COMMA,)
TOY = ToyAttention(ToyConfig(num_actions=8, vocab_size=8, max_length=6))
UNIFORM = Uniform(ToyConfig(num_actions=8, vocab_size=8, max_length=6))

search = jax.jit(
    jr.step_mcts_policy,
    static_argnums=(0, 2),
    static_argnames=(
        "num_simulations",
        "num_candidates",
        "max_step_length",
        "max_depth",
        "algorithm",
        "step_ids",
        "use_reward",
        "gumbel_scale",
        "dirichlet_fraction",
        "max_num_considered_actions",
    ),
)


dense_search = jax.jit(
    dense_step_mcts_policy,
    static_argnums=(0, 2),
    static_argnames=("step_ids", "num_simulations", "algorithm", "max_depth", "gumbel_scale", "dirichlet_fraction"),
)


def _batch(env, n):
    s = env.init_from_problem(jnp.int32(0))
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), s)


def _step_index(tokens, length):
    """Index into ALL_STEPS of one candidate (tokens [S], length)."""
    for m, (t, n) in enumerate(zip(ALL_STEPS, ALL_LENGTHS, strict=True)):
        if int(length) == n and (np.asarray(tokens)[:n] == t[:n]).all():
            return m
    raise AssertionError(f"not a step of the task: {tokens[:length]}")


@pytest.mark.parametrize("algorithm, kw", [("gumbel", {"gumbel_scale": 0.0}), ("muzero", {"dirichlet_fraction": 0.0})])
def test_candidates_covering_every_step_match_the_dense_step_reference(algorithm, kw):
    params = TOY.init(jax.random.key(1))
    params["wp"] = 0.05 * params["wp"]  # a prior flat enough that 48 samples draw every legal step
    states = _batch(ENV, 2)
    key = jax.random.key(2)
    out = search(TOY, params, ENV, states, key, num_simulations=24, num_candidates=48, max_step_length=2,
                 max_depth=3, algorithm=algorithm, step_ids=STEP_IDS, **kw)  # fmt: skip
    ref = dense_search(TOY, params, ENV, states, key, steps=ALL_STEPS, step_lengths=ALL_LENGTHS,
                       step_ids=STEP_IDS, num_simulations=24, algorithm=algorithm, max_depth=3, **kw)  # fmt: skip
    # the premise: at every expanded live node the distinct candidates are exactly the legal steps
    tree = out.search_tree
    emb = jax.tree.map(np.asarray, tree.embeddings)
    for b in range(2):
        for n in np.flatnonzero(np.asarray(tree.node_visits[b]) > 0):
            if emb.state.terminated[b, n] or emb.state.truncated[b, n]:
                continue
            found = {_step_index(emb.steps[b, n, c], emb.step_length[b, n, c]) for c in np.flatnonzero(emb.valid[b, n])}
            done = int((emb.state.tokens[b, n] == COMMA).sum())
            legal = {0, 1, 2, 3, 4} - ({3} if done == 0 else set()) - ({4} if done == 0 else set())
            legal -= {0, 1, 2, 3} if done == 2 else set()
            assert found == legal, (b, n, found, legal)
            assert emb.valid[b, n].sum() == len(legal)
    weights = np.zeros((2, len(ALL_STEPS)))
    for b in range(2):
        for c in range(48):
            if out.candidate_valid[b, c]:
                weights[b, _step_index(out.candidates[b, c], out.candidate_lengths[b, c])] += out.action_weights[b, c]
    np.testing.assert_allclose(weights, np.asarray(ref.action_weights), atol=1e-5)
    np.testing.assert_allclose(out.root_value, ref.search_tree.node_values[:, 0], atol=1e-5)
    assert int(ref.action[0]) == _step_index(out.step_tokens[0], out.step_length[0])


def test_finds_the_one_good_step_two_steps_deep_and_never_weights_illegal_or_duplicate_steps():
    # uniform prior and zero value: only the reward at the end of "b,c,<eos>" tells the steps apart
    states = _batch(ENV, 4)
    out = search(UNIFORM, UNIFORM.init(None), ENV, states, jax.random.key(0), num_simulations=64,
                 num_candidates=16, max_step_length=2, max_depth=3, step_ids=STEP_IDS)  # fmt: skip
    np.testing.assert_array_equal(out.step_tokens, np.tile([[B, COMMA]], (4, 1)))
    assert (np.asarray(out.root_value) > 0.2).all()
    w, valid = np.asarray(out.action_weights), np.asarray(out.candidate_valid)
    np.testing.assert_allclose(w.sum(1), 1.0, rtol=1e-6)
    assert (w[~valid] == 0).all() and (~valid).any()  # 16 samples of 3 legal steps: duplicates, never weighted
    assert not (np.asarray(out.candidates) == D).any()  # "d" is illegal in the first step: never sampled
    # nor anywhere in the tree where it is illegal: every candidate step is legal where it was drawn
    emb = jax.tree.map(np.asarray, out.search_tree.embeddings)
    first = (emb.state.length == 1)[..., None] & emb.valid
    assert not ((emb.steps[..., 0] == D) & first).any()


def test_bad_arguments_and_the_answer_oracle_raise():
    addition = jr.make("addition-v0", num_digits=2)
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(addition.spec, d_model=16, num_heads=2,
                                                                   num_layers=1, mlp_dim=32))  # fmt: skip
    params = model.init(jax.random.key(0))
    states = jax.vmap(addition.init)(jax.random.split(jax.random.key(1), 2))
    kw = dict(num_simulations=2, num_candidates=2, max_step_length=4)
    with pytest.raises(ValueError, match="stored answer"):
        jr.step_mcts_policy(model, params, addition, states, jax.random.key(0), use_reward=True, **kw)
    with pytest.raises(ValueError, match="num_candidates"):
        jr.step_mcts_policy(model, params, addition, states, jax.random.key(0), **{**kw, "num_candidates": 0})
    with pytest.raises(TypeError, match="top_k"):
        jr.step_mcts_policy(model, params, addition, states, jax.random.key(0), top_k=3, **kw)
    with pytest.raises(ValueError, match="prior"):
        jr.step_mcts_policy(model, params, addition, states, jax.random.key(0), prior="max", **kw)
    with pytest.raises(ValueError, match="step_ids"):
        jr.step_mcts_policy(UNIFORM, UNIFORM.init(None), ENV, _batch(ENV, 1), jax.random.key(0), **kw)


decode = jax.jit(
    jr.decode,
    static_argnums=(0, 2),
    static_argnames=(
        "method",
        "num_simulations",
        "num_candidates",
        "max_step_length",
        "max_depth",
        "step_ids",
        "candidate_temperature",
        "use_reward",
    ),
)


def test_decode_counts_every_sampled_and_evaluated_token_and_its_flops():
    # zero logits at temperature 0: every candidate is the first legal token's step ("a," then "<eos>")
    kw = dict(num_simulations=1, num_candidates=4, max_step_length=2, step_ids=STEP_IDS, candidate_temperature=0.0)
    out = decode(UNIFORM, UNIFORM.init(None), ENV, _batch(ENV, 2), jax.random.key(0), method="step_mcts", **kw)
    np.testing.assert_array_equal(out.tokens[:, 1:4], [[A, COMMA, EOS]] * 2)
    assert out.with_verifier and (np.asarray(out.returns) == 0).all()
    # search 1: root 4 x "a," (8) + expand "a," (2) + its 4 x "<eos>" (4); search 2: 4 x "<eos>" (4) + expand (1)
    np.testing.assert_array_equal(out.tokens_generated, [19, 19])
    # network rows: search 1 one sampling call x 4 candidates + one 2-token expansion, search 2 the expansion
    f = lambda k: jr.models.forward_flops_per_token(UNIFORM.config, k)  # noqa: E731
    seq, keys = 6, 6 + 4 * 2 + 2  # prefix, path (max_depth 4 x 2), own step
    np.testing.assert_allclose(out.flops, 2 * (seq * f(seq) + f(seq)) + 8 * f(keys), rtol=1e-6)


def test_decode_finds_the_good_path_and_is_blind_where_it_must_be():
    states = _batch(ENV, 4)
    kw = dict(num_simulations=64, num_candidates=16, max_step_length=2, max_depth=3, step_ids=STEP_IDS)
    out = decode(UNIFORM, UNIFORM.init(None), ENV, states, jax.random.key(0), method="step_mcts", **kw)
    assert out.with_verifier and (np.asarray(out.returns) == 1).all()  # greedy (argmax "a") never can
    oracle = Letters(reward_needs_answer=True)  # the same task, but its reward would be an answer oracle
    blind = decode(UNIFORM, UNIFORM.init(None), oracle, states, jax.random.key(0), method="step_mcts", **kw)
    assert not blind.with_verifier and (np.asarray(blind.returns) < 1).any()
    with pytest.raises(ValueError, match="stored answer"):
        jr.decode(UNIFORM, UNIFORM.init(None), oracle, states, jax.random.key(0), method="step_mcts", use_reward=True)


def _countdown_positions(env, problems):
    """States with each problem's demonstration fully written (reasoning, marker, answer) but not ended.

    Built directly: a reasoning task's live state is its tokens (the legal mask is fixed, no reward yet)."""
    rows = []
    for d in problems:
        state = env.init_from_problem(env.problem_from_dict(d))
        demo = env.tokenizer.encode(env.demonstration(d))
        n = int(state.length)
        tokens = state.tokens.at[n : n + len(demo)].set(jnp.asarray(demo, jnp.int32))
        rows.append(state.replace(tokens=tokens, length=jnp.int32(n + len(demo))))
    return jax.tree.map(lambda *x: jnp.stack(x), *rows)


def test_countdown_with_its_verifier_finds_solutions_the_greedy_policy_misses():
    # untrained policy and value; each position holds a correct answer not yet ended: only "<eos>" is right
    env = jr.make("countdown-v0", num_numbers=3)
    spec = env.spec
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(spec, d_model=32, num_heads=2, num_layers=1,
                                                                   mlp_dim=64))  # fmt: skip
    params = model.init(jax.random.key(0))
    keys = jax.random.split(jax.random.key(3), 8)
    states = _countdown_positions(env, [env.problem_to_dict(env.sample_problem(k)) for k in keys])
    out = search(model, params, env, states, jax.random.key(1), num_simulations=8, num_candidates=128,
                 max_step_length=3, max_depth=1)  # fmt: skip
    final, rewards = jr.search.play_step(env, states, out.step_tokens, out.step_length)
    assert final.done.all() and (np.asarray(rewards[:, 0]) == 1).all()
    logits, _ = model.apply(params, states.tokens)
    greedy = jnp.argmax(jnp.where(states.legal_action_mask, logits[jnp.arange(8), states.length - 1], -jnp.inf), -1)
    assert (np.asarray(greedy) != spec.eos_id).any()  # greedy writes on past the answer in some
