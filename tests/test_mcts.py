"""Token MCTS: top-K vs dense mctx, legal masks in the tree, prefix sharing, tic-tac-toe tactics."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.search.reference import dense_mcts_policy


# -- stand-in networks with the model interface (extend / apply) --------------------------------------
@dataclasses.dataclass(frozen=True)
class ToyConfig:
    num_actions: int
    vocab_size: int
    max_length: int
    d_model: int = 8
    num_layers: int = 1  # the FLOP formula reads these
    mlp_dim: int = 0
    value_head: str = "scalar"
    num_value_bins: int = 1


@dataclasses.dataclass(frozen=True)
class ToyAttention:
    """One-layer, one-head causal attention with a policy and a value head; K/V segments like the model."""

    config: ToyConfig

    def init(self, key):
        c = self.config
        ks = jax.random.split(key, 7)
        n = functools.partial(jax.random.normal, dtype=jnp.float32)
        return {
            "emb": n(ks[0], (c.vocab_size, c.d_model)),
            "pos": 0.3 * n(ks[1], (c.max_length, c.d_model)),
            "wq": n(ks[2], (c.d_model, c.d_model)) / c.d_model**0.5,
            "wk": n(ks[3], (c.d_model, c.d_model)) / c.d_model**0.5,
            "wv": n(ks[4], (c.d_model, c.d_model)) / c.d_model**0.5,
            "wp": n(ks[5], (c.d_model, c.num_actions)),
            "wval": n(ks[6], (c.d_model,)) / c.d_model**0.5,
        }

    def extend(self, params, tokens, positions, context=()):
        x = params["emb"][tokens] + params["pos"][positions]  # [B, T, d]
        q, k, v = x @ params["wq"], x @ params["wk"], x @ params["wv"]
        t = tokens.shape[1]
        keys = [c[0][0, :, :, 0] for c in context] + [k]
        vals = [c[1][0, :, :, 0] for c in context] + [v]
        causal = jnp.broadcast_to(jnp.tril(jnp.ones((t, t), bool)), (tokens.shape[0], t, t))
        masks = [jnp.broadcast_to(c[2][:, None, :], (tokens.shape[0], t, c[2].shape[1])) for c in context]
        keys, vals, mask = (
            jnp.concatenate(a, axis=1 if i < 2 else 2) for i, a in enumerate((keys, vals, masks + [causal]))
        )
        scores = jnp.einsum("btd,bsd->bts", q, keys) / self.config.d_model**0.5
        att = jax.nn.softmax(jnp.where(mask, scores, -1e30), axis=-1)
        h = x + jnp.einsum("bts,bsd->btd", att, vals)
        return h @ params["wp"], jnp.tanh(h @ params["wval"]), (k[None, :, :, None], v[None, :, :, None])

    def apply(self, params, tokens, *, positions=None):
        if positions is None:
            positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
        logits, values, _ = self.extend(params, tokens, positions)
        return logits, values


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Zero logits and zero value everywhere (pure search with a uniform prior)."""

    config: ToyConfig

    def init(self, key):
        return {"dummy": jnp.zeros(())}

    def extend(self, params, tokens, positions, context=()):
        b, t = tokens.shape
        kv = jnp.zeros((1, b, t, 1, 1))
        return jnp.zeros((b, t, self.config.num_actions)), jnp.zeros((b, t)), (kv, kv)

    def apply(self, params, tokens, *, positions=None):
        return self.extend(params, tokens, None)[:2]


# -- a hand-built token MDP with a known best action --------------------------------------------------
class Chain(TokenEnv):
    """Prompt [bos]; 3 response tokens over actions {0, 1, 2, 3}; 3 is never legal, and 0 is illegal
    right after 1. Reward at the end: 1 for [2, 0, 1], 0.3 for anything starting with 1, else 0
    (player 0; in the two-player variant players alternate and the reward is zero-sum)."""

    def __init__(self, num_players=1):
        self._spec = jr.EnvSpec(
            env_id="chain-v0",
            num_actions=4,
            vocab_size=6,
            max_length=4,
            max_prompt_length=1,
            num_players=num_players,
            pad_id=5,
            bos_id=4,
            eos_id=None,
            illegal_action_penalty=-1.0 if num_players == 2 else 0.0,
            reward_needs_answer=False,  # the reward is a function of the token path alone, like a game's
        )

    @property
    def spec(self):
        return self._spec

    def sample_problem(self, key):
        return jnp.int32(0)

    def _init(self, problem):
        s = self.spec
        return jr.EnvState(
            tokens=jnp.array([s.bos_id] + [s.pad_id] * 3, jnp.int32),
            length=jnp.int32(1),
            prompt_length=jnp.int32(1),
            current_player=jnp.int32(0),
            legal_action_mask=jnp.array([True, True, True, False]),
            rewards=jnp.zeros((s.num_players,), jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            problem=problem,
        )

    def _step(self, state, action):
        s = self.spec
        resp = state.tokens[1:4]
        over = state.length >= 4
        r = jnp.where((resp == jnp.array([2, 0, 1])).all(), 1.0, jnp.where(resp[0] == 1, 0.3, 0.0))
        r = jnp.where(over, r, 0.0).astype(jnp.float32)
        rewards = jnp.array([r]) if s.num_players == 1 else jnp.array([r, -r])
        return state.replace(
            current_player=(state.current_player + 1) % s.num_players,
            legal_action_mask=jnp.array([True, True, True, False]) & ~((action == 1) & (jnp.arange(4) == 0)),
            rewards=rewards,
            terminated=over,
        )


def _batch(env, n):
    s = env.init_from_problem(jnp.int32(0))
    return jax.tree.map(lambda x: jnp.broadcast_to(x, (n, *x.shape)), s)


def _tree_tokens(tree):
    """Token ids of every expanded edge in the tree: [B, N, K] (-2 where the edge was not expanded)."""
    child = tree.children_index  # [B, N, K]
    slots = tree.embeddings.slots  # [B, N, K]
    return np.where(np.asarray(child) >= 0, np.asarray(slots), -2)


# -- tests --------------------------------------------------------------------------------------------
CHAIN, CHAIN2 = Chain(), Chain(2)
TOY = ToyAttention(ToyConfig(num_actions=4, vocab_size=6, max_length=4))
#: One jitted search reused across tests (static: model, env and every hyper-parameter): fewer compiles.
search = jax.jit(
    jr.mcts_policy,
    static_argnums=(0, 2),
    static_argnames=(
        "num_simulations",
        "top_k",
        "algorithm",
        "max_depth",
        "evaluation",
        "store_states",
        "gumbel_scale",
        "dirichlet_fraction",
        "max_num_considered_actions",
        "rollouts",
        "rollout_weight",
        "use_reward",
        "search",
    ),
)


def test_finds_the_best_action_and_never_expands_illegal_tokens():
    model = Uniform(TOY.config)
    out = search(
        model, model.init(None), CHAIN, _batch(CHAIN, 4), jax.random.key(0), num_simulations=64, top_k=3, max_depth=3
    )
    assert np.asarray(out.action).tolist() == [2, 2, 2, 2]
    w = np.asarray(out.action_weights)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    assert (w[:, 3] == 0).all() and w[:, 2].min() > 0.5
    # Inside the tree: token 3 is never played, and 0 never right after 1.
    tree = out.search_tree
    toks = _tree_tokens(tree)
    assert not (toks == 3).any()
    parent_tok = np.asarray(
        jnp.take_along_axis(tree.embeddings.path, jnp.maximum(tree.embeddings.depth - 1, 0)[..., None], axis=2)[..., 0]
    )
    after_one = (parent_tok == 1) & (np.asarray(tree.embeddings.depth) > 0)
    assert not (toks[after_one] == 0).any()
    assert (toks[after_one] >= 0).any()  # such nodes were expanded, so the check had teeth


@pytest.mark.parametrize(
    "algorithm,kw",
    [
        ("gumbel", dict(gumbel_scale=0.0)),
        ("muzero", dict(dirichlet_fraction=0.0)),
    ],
)
def test_top_k_with_k_equal_a_matches_dense_mctx(algorithm, kw):
    env = CHAIN2  # two players: discounts -1 between moves, 0 after the end
    params = TOY.init(jax.random.key(1))
    states, key = _batch(env, 3), jax.random.key(7)
    common = dict(num_simulations=16, max_depth=3, algorithm=algorithm, **kw)
    out = search(TOY, params, env, states, key, top_k=4, evaluation="kv", **common)
    dense = jax.jit(functools.partial(dense_mcts_policy, TOY, env=env, **common))(params=params, states=states, key=key)
    np.testing.assert_allclose(out.action_weights, dense.action_weights, atol=1e-5)
    np.testing.assert_allclose(out.root_value, dense.search_tree.node_values[:, 0], atol=1e-5)
    assert float(jnp.abs(out.action_weights[:, 3]).max()) == 0.0


def test_prefix_shared_evaluation_equals_full_prefix():
    env = CHAIN2
    params = TOY.init(jax.random.key(3))
    states = _batch(env, 3)  # the shapes of the dense test's kv search: its compile is reused
    # Start two rows one token in, so prefixes differ in length.
    stepped = jax.vmap(env.step)(states, jnp.array([0, 0, 2]))
    states = jax.tree.map(lambda a, b: jnp.stack([a[0], b[1], b[2]]), states, stepped)
    common = dict(num_simulations=16, max_depth=3, algorithm="gumbel", gumbel_scale=0.0)
    res = {
        ev: search(TOY, params, env, states, jax.random.key(7), top_k=4, evaluation=ev, **common, **extra)
        for ev, extra in (("full", {}), ("window", {"store_states": False}), ("kv", {}))
    }
    for ev in ("window", "kv"):
        np.testing.assert_allclose(res[ev].action_weights, res["full"].action_weights, atol=1e-5)
        np.testing.assert_allclose(res[ev].search_tree.node_values, res["full"].search_tree.node_values, atol=1e-5)
        np.testing.assert_array_equal(res[ev].action, res["full"].action)


def test_bad_arguments_raise_value_errors():
    params = TOY.init(jax.random.key(0))
    with pytest.raises(ValueError, match="algorithm must be one of"):
        jr.mcts_policy(TOY, params, CHAIN, _batch(CHAIN, 1), jax.random.key(0), num_simulations=2, algorithm="az")
    with pytest.raises(ValueError, match="rollout_weight in"):
        jr.mcts_policy(TOY, params, CHAIN, _batch(CHAIN, 1), jax.random.key(0), num_simulations=2, rollout_weight=2.0)
    with pytest.raises(ValueError, match="rollouts must be >= 0"):
        jr.mcts_policy(TOY, params, CHAIN, _batch(CHAIN, 1), jax.random.key(0), num_simulations=2, rollouts=-1)
    with pytest.raises(ValueError, match="must be batched"):
        one = CHAIN.init_from_problem(jnp.int32(0))
        jr.mcts_policy(TOY, params, CHAIN, one, jax.random.key(0), num_simulations=2)


# -- tic-tac-toe tactics with a uniform prior ------------------------------------------------------------
TTT_CASES = [
    # (opening moves, expected move): X to move wins / blocks; O to move wins / blocks
    ([0, 3, 1, 4], 2),  # X: 0 1 _ -> takes 2 (also blocks O's 3 4 5)
    ([4, 0, 8, 2], 1),  # X to move, O threatens 0 1 2 -> X must block at 1
    ([0, 1, 2, 4, 3], 7),  # O to move: O has 1 4, wins at 7 (X threatens 6)
    ([4, 0, 3], 5),  # O to move: X threatens 3 4 5 -> O blocks at 5
]


def test_tic_tac_toe_takes_wins_and_blocks_losses_for_either_player():
    env = jr.make("tic-tac-toe-v0")
    spec = env.spec
    model = Uniform(ToyConfig(num_actions=spec.num_actions, vocab_size=spec.vocab_size, max_length=spec.max_length))
    states = [env.init_from_problem(env.problem_from_dict({"moves": m})) for m, _ in TTT_CASES]
    states = jax.tree.map(lambda *x: jnp.stack(x), *states)
    assert np.asarray(states.current_player).tolist() == [0, 0, 1, 1]
    out = search(
        model,
        model.init(None),
        env,
        states,
        jax.random.key(0),
        num_simulations=1000,
        top_k=9,
        max_depth=9,
        max_num_considered_actions=9,
    )
    assert np.asarray(out.action).tolist() == [m for _, m in TTT_CASES]
    root_q = out.search_tree.qvalues(jnp.zeros((4,), jnp.int32))
    np.testing.assert_allclose(root_q[np.array([0, 2])].max(-1), 1.0)  # the winning moves are sure wins


def test_real_transformer_prefix_sharing_matches_full_forward_on_tic_tac_toe():
    env = jr.make("tic-tac-toe-v0")
    model = jr.PolicyValueTransformer(
        jr.TransformerConfig.for_env(env.spec, d_model=32, num_heads=2, num_layers=1, mlp_dim=64)
    )
    params = model.init(jax.random.key(0))
    openings = [[], [4], [4, 0, 8]]
    states = [env.init_from_problem(env.problem_from_dict({"moves": m})) for m in openings]
    states = jax.tree.map(lambda *x: jnp.stack(x), *states)
    res = {
        ev: search(
            model,
            params,
            env,
            states,
            jax.random.key(2),
            top_k=4,
            evaluation=ev,
            num_simulations=12,
            max_depth=4,
            max_num_considered_actions=4,
        )
        for ev in ("full", "kv")
    }
    np.testing.assert_allclose(res["kv"].action_weights, res["full"].action_weights, atol=1e-4)
    np.testing.assert_allclose(res["kv"].search_tree.node_values, res["full"].search_tree.node_values, atol=1e-4)
    np.testing.assert_array_equal(res["kv"].search_tree.embeddings.slots, res["full"].search_tree.embeddings.slots)


# -- random rollouts (AlphaGo's mixed leaf evaluation) ---------------------------------------------------
@functools.cache
def _random_play_value(moves: tuple[int, ...]) -> float:
    """Exact expected return for the player to move when both sides play uniformly random legal moves
    from the tic-tac-toe position `moves` (slow reference: full enumeration with the pure-Python game)."""
    from bench.players import PyBoardGame

    game = PyBoardGame("tic_tac_toe", list(moves))
    if game.done:
        return 0.0
    legal = [m for m, ok in enumerate(game.legal_moves()) if ok]
    total = 0.0
    for m in legal:
        after = game.copy()
        reward = after.play(m)[game.to_move]
        total += reward if after.done else -_random_play_value((*moves, m))
    return total / len(legal)


def _ttt_states(env, openings):
    states = [env.init_from_problem(env.problem_from_dict({"moves": list(m)})) for m in openings]
    return jax.tree.map(lambda *x: jnp.stack(x), *states)


def test_random_rollout_value_matches_the_exact_random_play_expectation():
    env = jr.make("tic-tac-toe-v0")
    openings = [(), (4,), (4, 0, 3), (4, 0, 8, 2), (0, 3, 1, 4, 2)]  # the last one is over (X won)
    states = _ttt_states(env, openings)
    assert np.asarray(states.done).tolist() == [False] * 4 + [True]
    n = 20_000
    fn = jax.jit(functools.partial(jr.random_rollout_value, env, num_rollouts=n, max_steps=9))
    got = np.asarray(fn(states, jax.random.key(0)))
    want = np.array([_random_play_value(m) for m in openings])
    np.testing.assert_allclose(want[:2], [0.2968254, -0.5], atol=1e-6)  # known: X wins 58.5%, O 28.8%
    np.testing.assert_allclose(got, want, atol=4 / np.sqrt(n))  # 4 standard errors (|return| <= 1)
    assert got[-1] == 0.0
    # a zero step budget plays nothing
    np.testing.assert_array_equal(
        jr.random_rollout_value(env, states, jax.random.key(0), num_rollouts=4, max_steps=0), 0
    )


def test_rollouts_evaluate_leaves_a_blind_value_head_cannot():
    env = jr.make("tic-tac-toe-v0")
    spec = env.spec
    model = Uniform(ToyConfig(num_actions=spec.num_actions, vocab_size=spec.vocab_size, max_length=spec.max_length))
    states = _ttt_states(env, [(4, 0, 8, 2)])  # X to move must block O's 0-1-2 at 1
    kw = dict(num_simulations=64, top_k=9, max_depth=1, max_num_considered_actions=9)
    blind = search(model, model.init(None), env, states, jax.random.key(1), **kw)
    # weight 0: the rollouts are played but ignored, so the search is bit-identical to no rollouts
    ignored = search(model, model.init(None), env, states, jax.random.key(1), rollouts=8, rollout_weight=0.0, **kw)
    np.testing.assert_array_equal(ignored.action_weights, blind.action_weights)
    np.testing.assert_array_equal(ignored.root_value, blind.root_value)
    q_blind = np.asarray(blind.search_tree.qvalues(jnp.zeros((1,), jnp.int32)))[0]
    np.testing.assert_array_equal(q_blind, 0.0)  # depth 1, no terminal child, zero value: nothing to go on

    out = search(model, model.init(None), env, states, jax.random.key(1), rollouts=512, rollout_weight=1.0, **kw)
    assert int(out.action[0]) == 1
    # each root child's Q is its random-play value for X (slot order is the top-k order of equal logits)
    slots = np.asarray(out.search_tree.embeddings.slots[0, 0])
    q = np.asarray(out.search_tree.qvalues(jnp.zeros((1,), jnp.int32)))[0]
    for slot, move in enumerate(slots):
        if move >= 0 and int(out.search_tree.children_visits[0, 0, slot]) > 0:
            assert abs(q[slot] - (-_random_play_value((4, 0, 8, 2, int(move))))) < 0.15, (move, q[slot])


def test_agent_act_passes_rollouts_and_depth_to_its_search():
    env = jr.make("tic-tac-toe-v0")
    model = jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, d_model=16, num_heads=2, num_layers=1))
    agent = jr.Agent(model=model, params=model.init(jax.random.key(0)), env=env)
    states = _ttt_states(env, [(4, 0, 8, 2)] * 2)
    kw = dict(method="mcts", num_simulations=64, top_k=9, max_depth=1)
    # depth 1: an untrained value head cannot see O's threat; 64 random playouts per leaf do (block at 1)
    acts = agent.act(jax.random.key(3), states, rollouts=64, rollout_weight=1.0, **kw)
    np.testing.assert_array_equal(acts, [1, 1])
    [(_, _, _, search, _)] = agent._jitted
    assert search == jr.SearchConfig(
        num_simulations=64, top_k=9, rollouts=64, rollout_weight=1.0, max_depth=1, gumbel_scale=0.0
    )  # the agent's default search (no run config: no Gumbel noise at test time) with the options asked for
    # PUCT too: greedy play takes the most visited move
    acts = agent.act(jax.random.key(3), states, rollouts=64, rollout_weight=1.0, algorithm="muzero", **kw)
    np.testing.assert_array_equal(acts, [1, 1])


def test_selfplay_search_targets_use_the_rollouts():
    from jaxrl_reason.search.selfplay import selfplay

    env = jr.make("tic-tac-toe-v0")
    spec = env.spec
    model = Uniform(ToyConfig(num_actions=spec.num_actions, vocab_size=spec.vocab_size, max_length=spec.max_length))
    states = _ttt_states(env, [(4, 0, 8, 2)] * 2)
    search = jr.SearchConfig(num_simulations=64, top_k=9, max_depth=1)
    play = jax.jit(
        functools.partial(selfplay, model, env=env, temperature=0.0, num_steps=1), static_argnames=("search",)
    )
    blind = play(model.init(None), states=states, key=jax.random.key(0), search=search)
    seen = play(
        model.init(None), states=states, key=jax.random.key(0), search=search.replace(rollouts=64, rollout_weight=1.0)
    )
    # the recorded search policy (the training target) favours the block only with rollouts
    legal = np.array([1, 3, 5, 6, 7])
    np.testing.assert_allclose(np.asarray(blind.policy[:, 0])[:, legal], 0.2, atol=1e-6)  # no information
    pi = np.asarray(seen.policy[:, 0])
    assert (pi[:, 1] > 0.3).all() and (pi[:, 1] > np.delete(pi, 1, axis=1).max(-1)).all(), pi
    np.testing.assert_array_equal(seen.actions[:, 0], [1, 1])
