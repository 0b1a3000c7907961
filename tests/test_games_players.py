"""Reference players in bench/players.py: perfect tic-tac-toe minimax and UCT MCTS for connect four."""

import numpy as np
import pytest

from bench.players import PyBoardGame, mcts_move, ttt_optimal_moves, ttt_value


def test_minimax_values_of_hand_picked_positions():
    assert ttt_value([]) == 0  # perfect play draws
    assert ttt_optimal_moves([]) == frozenset(range(9))  # every first move still draws
    assert ttt_optimal_moves([4]) == {0, 2, 6, 8}  # only corners draw against a centre opening
    assert ttt_value([0, 3, 1, 4]) == 1 and ttt_optimal_moves([0, 3, 1, 4]) == {2}  # X wins at once
    assert ttt_value([0, 4, 8]) == 0 and ttt_optimal_moves([0, 4, 8]) == {1, 3, 5, 7}  # O must take an edge
    assert ttt_optimal_moves([0, 1]) == {3, 4, 6}  # O's adjacent edge loses: each of these forks
    assert ttt_value([0, 1, 4]) == -1  # O to move, X threatens 8 and will fork: O loses
    assert ttt_value([0, 3, 1, 4, 2]) == -1 and ttt_optimal_moves([0, 3, 1, 4, 2]) == frozenset()  # X has won
    assert ttt_value([0, 1, 2, 4, 3, 5, 7, 6, 8]) == 0  # a finished draw


def test_reference_game_rejects_illegal_histories():
    with pytest.raises(ValueError, match="illegal move 4"):
        PyBoardGame("tic_tac_toe", [4, 4])
    with pytest.raises(ValueError, match="unknown game"):
        PyBoardGame("chess")


@pytest.mark.parametrize(
    ("moves", "win"),
    [
        ([0, 0, 1, 1, 2, 2], 3),  # X completes the bottom row
        ([0, 6, 1, 6, 2, 6], 3),  # X wins at 3 although O threatens column 6
        ([0, 3, 0, 4, 1, 5, 6], 2),  # O completes 2..5 on the bottom row
    ],
)
def test_mcts_takes_an_immediate_win(moves, win):
    g = PyBoardGame("connect_four", moves)
    winning = [m for m in range(7) if g.legal_moves()[m] and _wins(g, m)]
    assert winning == [win]
    for seed in (0, 1):
        assert mcts_move("connect_four", moves, num_simulations=1000, seed=seed) in winning


def test_mcts_blocks_an_immediate_threat():
    moves = [1, 0, 2, 0, 5, 0]  # O has three in column 0; X to move and has no win: must block at 0
    g = PyBoardGame("connect_four", moves)
    assert not any(_wins(g, m) for m in range(7))
    assert mcts_move("connect_four", moves, num_simulations=1000, seed=0) == 0


def test_mcts_is_deterministic_for_a_seed():
    a = mcts_move("connect_four", [3], num_simulations=200, seed=np.random.default_rng(7))
    b = mcts_move("connect_four", [3], num_simulations=200, seed=np.random.default_rng(7))
    assert a == b


def _wins(g, m):
    g2 = g.copy()
    g2.play(m)
    return g2.winner == g.to_move
