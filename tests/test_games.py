"""Tic-tac-toe and connect four as token MDPs: conformance, golden positions, and step-by-step
equivalence with the slow pure-Python reference in bench/players.py."""

import doctest
import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxrl_reason as jr
from bench.players import PyBoardGame
from jaxrl_reason.envs.games import CONNECT_FOUR, TIC_TAC_TOE, ConnectFour, TicTacToe, connect_four, tic_tac_toe

TTT, C4 = TicTacToe(), ConnectFour()
# A full connect-four board without four in a row: column c, height h holds ((c // 2) + h) % 2.
C4_DRAW = [0] * 6 + [1] * 6 + [4] + [2] * 6 + [3] * 6 + [4] * 5 + [5] * 5 + [6] * 6 + [5]


@functools.cache
def _jitted(env):
    return jax.jit(env.init_from_problem), jax.jit(env.step), jax.jit(jax.vmap(env.init)), jax.jit(jax.vmap(env.step))


def _play(env, moves, opening=()):
    """Replays `moves` from `opening` with the (cached) jitted single-example step."""
    init, step, _, _ = _jitted(env)
    s = init(env.problem_from_dict({"moves": list(opening)}))
    for m in moves:
        s = step(s, jnp.int32(m))
    return s


# -- conformance and spec -------------------------------------------------------------------------------
@pytest.mark.parametrize("env_id", ["tic-tac-toe-v0", "connect-four-v0"])
def test_api_test(env_id):
    jr.api_test(jr.make(env_id), num_episodes=8)


def test_api_test_with_random_openings():
    jr.api_test(jr.make("connect-four-v0", random_opening_moves=5), num_episodes=4)


def test_specs_follow_the_game_contract():
    for env, a, cells in [(TTT, 9, 9), (C4, 7, 42)]:
        s = env.spec
        assert (s.num_actions, s.vocab_size, s.bos_id, s.pad_id, s.eos_id) == (a, a + 2, a, a + 1, None)
        assert (s.max_length, s.max_prompt_length, s.num_players, s.illegal_action_penalty) == (1 + cells, 1, 2, -1.0)
    assert ConnectFour(random_opening_moves=6).spec.max_prompt_length == 7
    with pytest.raises(ValueError, match=r"random_opening_moves must be in \[0, 9\)"):
        TicTacToe(random_opening_moves=9)


# -- rules: every line, both players ----------------------------------------------------------------------
@pytest.mark.parametrize("rules", [TIC_TAC_TOE, CONNECT_FOUR], ids=lambda r: r.name)
def test_every_line_wins_and_one_stone_short_does_not(rules):
    assert len(rules.lines) == {"tic_tac_toe": 8, "connect_four": 69}[rules.name]
    directions = {tuple(np.diff(np.divmod(line, rules.cols), axis=1)[:, 0]) for line in rules.lines}
    assert directions == {(0, 1), (1, 0), (1, 1), (1, -1)}  # (drow, dcol) of rows, cols and both diagonals
    boards, want = [], []
    for line, player in itertools.product(rules.lines, (0, 1)):
        b = np.full(rules.num_cells, -1, np.int32)
        b[line] = player
        boards.append(b.copy()), want.append((player == 0, player == 1))
        b[line[1]] = 1 - player  # break the line with an opponent stone
        boards.append(b), want.append((False, False))
    is_win = jax.jit(jax.vmap(lambda b: jnp.stack([rules.is_win(b, 0), rules.is_win(b, 1)])))
    np.testing.assert_array_equal(np.asarray(is_win(jnp.asarray(np.stack(boards)))), np.asarray(want))


# -- golden games --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("moves", "winner"),
    [
        ([0, 3, 1, 4, 2], 0),  # X: top row
        ([0, 3, 1, 4, 8, 5], 1),  # O: middle row
        ([0, 1, 3, 2, 6], 0),  # X: left column
        ([0, 2, 1, 5, 3, 8], 1),  # O: right column
        ([0, 1, 4, 2, 8], 0),  # X: main diagonal
        ([0, 2, 1, 4, 8, 6], 1),  # O: anti-diagonal
        ([0, 1, 2, 4, 3, 5, 7, 6, 8], None),  # draw on the last cell
    ],
)
def test_tic_tac_toe_golden_games(moves, winner):
    s = _play(TTT, moves[:-1])
    assert not s.done and int(s.current_player) == (len(moves) - 1) % 2
    s = _play(TTT, moves)
    want = [0.0, 0.0] if winner is None else [1.0, -1.0] if winner == 0 else [-1.0, 1.0]
    assert bool(s.terminated) and np.asarray(s.rewards).tolist() == want
    assert int(s.aux.winner) == (-1 if winner is None else winner) and bool(s.legal_action_mask.all())
    assert np.asarray(s.tokens).tolist() == [9, *moves] + [10] * (9 - len(moves))


@pytest.mark.parametrize(
    ("moves", "winner"),
    [
        ([0, 1, 0, 1, 0, 1, 0], 0),  # vertical, left edge
        ([6, 0, 6, 6, 1, 6, 1, 6, 2, 6], 1),  # vertical up to the top, right edge
        ([0, 0, 1, 1, 2, 2, 3], 0),  # horizontal, bottom-left corner
        ([0, 3, 0, 4, 0, 5, 1, 6], 1),  # horizontal, bottom-right corner
        ([0, 1, 1, 2, 2, 3, 2, 3, 3, 5, 3], 0),  # diagonal up-right from the bottom-left corner
        ([6, 5, 5, 4, 4, 3, 4, 3, 3, 1, 3], 0),  # diagonal up-left from the bottom-right corner
        (C4_DRAW, None),  # full board, no four in a row
    ],
)
def test_connect_four_golden_games(moves, winner):
    ref = PyBoardGame("connect_four")
    ref_rewards = [ref.play(m) for m in moves]
    assert ref.winner == winner and ref.done == (winner is not None or len(moves) == 42)
    s = _play(C4, moves)
    want = [0.0, 0.0] if winner is None else [1.0, -1.0] if winner == 0 else [-1.0, 1.0]
    assert np.asarray(s.rewards).tolist() == want == list(ref_rewards[-1])
    assert bool(s.terminated) == ref.done and int(s.aux.winner) == (-1 if winner is None else winner)


def test_connect_four_full_column_is_illegal_and_loses():
    s = _play(C4, [0] * 6)
    assert np.asarray(s.legal_action_mask).tolist() == [False] + [True] * 6 and not s.done
    lost = _play(C4, [0] * 7)  # player 0 drops into the full column
    assert bool(lost.terminated) and np.asarray(lost.rewards).tolist() == [-1.0, 1.0]
    assert int(lost.length) == 8 and int(lost.tokens[7]) == 0  # the illegal move's token is still appended
    after = _jitted(C4)[1](lost, jnp.int32(3))  # frozen
    assert np.asarray(after.rewards).tolist() == [0.0, 0.0] and int(after.length) == 8
    assert "played an illegal move" in C4.render(lost)


def test_render_examples_in_the_docstrings():
    for module in (tic_tac_toe, connect_four):
        result = doctest.testmod(module)
        assert result.attempted == 3 and result.failed == 0


# -- openings ------------------------------------------------------------------------------------------------
def test_openings_replay_render_and_reject_bad_input():
    s = TTT.init_from_problem(TTT.problem_from_dict({"moves": [4, 0, 8]}))
    assert int(s.length) == int(s.prompt_length) == 4 and int(s.current_player) == 1
    assert np.asarray(s.tokens[:4]).tolist() == [9, 4, 0, 8]
    assert TTT.render(s) == "O . .\n. X .\n. . X\nO (player 1) to move"
    assert TTT.problem_to_dict(s.problem) == {"moves": [4, 0, 8]}
    # an opening that already ends the game gives a terminal initial state (rewards: no transition yet)
    won = TTT.init_from_problem(TTT.problem_from_dict({"moves": [0, 3, 1, 4, 2]}))
    assert bool(won.terminated) and int(won.aux.winner) == 0 and bool(won.legal_action_mask.all())
    assert np.asarray(won.rewards).tolist() == [0.0, 0.0] and TTT.render(won).endswith("X (player 0) won")
    for bad, match in [
        ({"moves": [4, 4]}, "move 1 .4. is illegal"),
        ({"moves": [0, 3, 1, 4, 2, 5]}, "after the game ended"),
        ({"moves": [9]}, r"expected an int in \[0, 9\)"),
        ({"moves": ["a"]}, "expected an int"),
        ({"opening": []}, "expected a dict"),
    ]:
        with pytest.raises(ValueError, match=match):
            TTT.problem_from_dict(bad)
    with pytest.raises(ValueError, match="cell or column taken"):
        C4.problem_from_dict({"moves": [2] * 7})


def test_sampled_openings_are_legal_diverse_and_unfinished():
    env = ConnectFour(random_opening_moves=8)
    states = _jitted(env)[2](jax.random.split(jax.random.PRNGKey(0), 64))
    assert not np.asarray(states.done).any()
    openings = set()
    for i in range(64):
        row = jax.tree.map(lambda x, i=i: np.asarray(x)[i], states)
        d = env.problem_to_dict(row.problem)
        assert len(d["moves"]) == 8 and int(row.prompt_length) == 9
        ref = PyBoardGame("connect_four", d["moves"])  # raises if illegal
        assert np.asarray(row.aux.board).tolist() == ref.board and not ref.done
        openings.add(tuple(d["moves"]))
    assert len(openings) > 60


def test_varied_opening_lengths_cover_zero_to_the_maximum_and_stay_legal():
    env = TicTacToe(random_opening_moves=4, vary_opening_length=True)
    assert env.spec.max_prompt_length == 5
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(1), 200))
    assert not np.asarray(states.done).any()
    lengths = np.asarray(states.prompt_length) - 1
    counts = np.bincount(lengths, minlength=5)
    assert counts.shape == (5,) and (counts > 20).all()  # uniform over 0..4: about 40 each
    for i in range(200):
        row = jax.tree.map(lambda x, i=i: np.asarray(x)[i], states)
        d = env.problem_to_dict(row.problem)
        assert len(d["moves"]) == lengths[i]
        ref = PyBoardGame("tic_tac_toe", d["moves"])  # raises if illegal
        assert np.asarray(row.aux.board).tolist() == ref.board and not ref.done


# -- equivalence with the pure-Python reference -----------------------------------------------------------
@pytest.mark.parametrize(("env", "name"), [(TTT, "tic_tac_toe"), (C4, "connect_four")], ids=["ttt", "c4"])
def test_random_games_match_the_python_reference(env, name):
    """Random games (5% possibly-illegal moves): rewards, masks, flags, players, boards, tokens agree."""
    batch, rng = 96, np.random.default_rng(1)
    _, _, init, step = _jitted(env)
    s = init(jax.random.split(jax.random.PRNGKey(0), batch))
    refs = [PyBoardGame(name) for _ in range(batch)]
    a = env.spec.num_actions
    for _ in range(env.spec.max_length):
        mask = np.asarray(s.legal_action_mask)
        wild = rng.random(batch) < 0.05
        actions = np.array(
            [rng.integers(a) if w else rng.choice(np.flatnonzero(m)) for w, m in zip(wild, mask, strict=True)],
            np.int32,
        )
        s = step(s, jnp.asarray(actions))
        got = jax.tree.map(np.asarray, s)
        for i, ref in enumerate(refs):
            rewards = ref.play(int(actions[i]))
            assert got.rewards[i].tolist() == list(rewards)
            assert bool(got.terminated[i]) == ref.done and not got.truncated[i]
            assert got.legal_action_mask[i].tolist() == ref.legal_moves()
            assert got.aux.board[i].tolist() == ref.board
            assert int(got.current_player[i]) == ref.to_move
            assert got.tokens[i, 1 : int(got.length[i])].tolist() == ref.history
    assert all(r.done for r in refs)
    outcomes = {(r.winner, len(r.history) == env.spec.max_length - 1) for r in refs}
    assert {(0, False), (1, False)} <= outcomes  # both players won some games
