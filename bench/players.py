"""Reference players for the board games (plain Python + numpy; for tests and benchmarks).

* :class:`PyBoardGame` — a slow, obviously-correct pure-Python implementation of tic-tac-toe and
  connect four with the env's conventions (moves, ``-1/0/1`` board, rewards, illegal moves). The
  tests check the JAX envs against it step by step.
* :func:`ttt_value` / :func:`ttt_optimal_moves` — perfect tic-tac-toe play by memoized minimax.
* :func:`mcts_move` — plain UCT Monte-Carlo tree search with uniformly random rollouts (connect four,
  or any :class:`PyBoardGame`), a classic baseline opponent.

Positions are given as move lists (what the env's tokens hold after ``bos``)::

    from bench.players import ttt_optimal_moves, mcts_move
    ttt_optimal_moves([4, 0])                  # -> frozenset of best replies for X
    mcts_move("connect_four", [3, 3, 2], num_simulations=1000, seed=0)  # -> a column
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

_GAMES = {"tic_tac_toe": (3, 3, 3, False), "connect_four": (6, 7, 4, True)}


class PyBoardGame:
    """One game in progress (mutable). Board: row-major, top row first, -1 empty, 0/1 stones."""

    def __init__(self, name: str, moves: Sequence[int] = ()):
        if name not in _GAMES:
            raise ValueError(f"unknown game {name!r}; expected one of {sorted(_GAMES)}")
        self.name = name
        self.rows, self.cols, self.k, self.gravity = _GAMES[name]
        self.num_moves = self.cols if self.gravity else self.rows * self.cols
        self.board = [-1] * (self.rows * self.cols)
        self.to_move = 0
        self.winner: int | None = None
        self.done = False
        self.history: list[int] = []
        for m in moves:
            if self.done or not self.legal_moves()[m]:
                raise ValueError(f"illegal move {m} in {list(moves)}")
            self.play(m)

    def copy(self) -> PyBoardGame:
        g = object.__new__(PyBoardGame)
        g.__dict__.update(self.__dict__)
        g.board, g.history = list(self.board), list(self.history)
        return g

    def legal_moves(self) -> list[bool]:
        """[num_moves] legality of each move (all True once the game is over, like the env)."""
        if self.done:
            return [True] * self.num_moves
        if self.gravity:
            return [self.board[c] == -1 for c in range(self.cols)]
        return [v == -1 for v in self.board]

    def _landing(self, move: int) -> int:
        if not self.gravity:
            return move
        for r in range(self.rows - 1, -1, -1):
            if self.board[r * self.cols + move] == -1:
                return r * self.cols + move
        raise AssertionError("full column")

    def _wins_at(self, cell: int, player: int) -> bool:
        r0, c0 = divmod(cell, self.cols)
        for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
            count = 1
            for sign in (1, -1):
                r, c = r0 + sign * dr, c0 + sign * dc
                while 0 <= r < self.rows and 0 <= c < self.cols and self.board[r * self.cols + c] == player:
                    count += 1
                    r, c = r + sign * dr, c + sign * dc
            if count >= self.k:
                return True
        return False

    def play(self, move: int) -> tuple[float, float]:
        """Plays `move` for the player to move; returns the rewards (player 0, player 1).

        A finished game is unchanged (rewards 0); an illegal move ends it with -1 for the mover.
        """
        if self.done:
            return (0.0, 0.0)
        p = self.to_move
        self.history.append(int(move))
        if not (0 <= move < self.num_moves) or not self.legal_moves()[move]:
            self.done = True
            return (-1.0, 1.0) if p == 0 else (1.0, -1.0)
        cell = self._landing(move)
        self.board[cell] = p
        self.to_move = 1 - p
        if self._wins_at(cell, p):
            self.winner, self.done = p, True
            return (1.0, -1.0) if p == 0 else (-1.0, 1.0)
        if all(v != -1 for v in self.board):
            self.done = True
        return (0.0, 0.0)


# -- perfect tic-tac-toe ------------------------------------------------------------------------------
@functools.cache
def _ttt_value(board: tuple[int, ...], to_move: int) -> int:
    """Game value for `to_move` under perfect play: +1 win, 0 draw, -1 loss."""
    g = PyBoardGame("tic_tac_toe")
    g.board = list(board)
    best = -2
    for m in range(9):
        if board[m] != -1:
            continue
        g2 = g.copy()
        g2.to_move = to_move
        g2.play(m)
        v = 1 if g2.winner == to_move else 0 if g2.done else -_ttt_value(tuple(g2.board), 1 - to_move)
        best = max(best, v)
        if best == 1:
            break
    return 0 if best == -2 else best


def ttt_value(moves: Sequence[int]) -> int:
    """Value of a tic-tac-toe position for the player to move (+1 win, 0 draw, -1 loss).

    A finished position is worth -1 if the previous player won, 0 if drawn.
    """
    g = PyBoardGame("tic_tac_toe", moves)
    if g.done:
        return -1 if g.winner is not None else 0
    return _ttt_value(tuple(g.board), g.to_move)


def ttt_optimal_moves(moves: Sequence[int]) -> frozenset[int]:
    """The set of moves that keep the best game value for the player to move (empty if finished)."""
    g = PyBoardGame("tic_tac_toe", moves)
    if g.done:
        return frozenset()
    best = ttt_value(moves)
    return frozenset(m for m in range(9) if g.board[m] == -1 and -ttt_value([*moves, m]) == best)


# -- UCT with random rollouts ---------------------------------------------------------------------------
class _Node:
    __slots__ = ("children", "untried", "visits", "wins", "mover")

    def __init__(self, game: PyBoardGame, mover: int):
        self.children: dict[int, _Node] = {}
        self.untried = [] if game.done else [m for m, ok in enumerate(game.legal_moves()) if ok]
        self.visits = 0
        self.wins = 0.0  # outcome for `mover` (the player who moved into this node): 1 win, 0.5 draw
        self.mover = mover


def mcts_move(
    game: str | PyBoardGame,
    moves: Sequence[int] = (),
    *,
    num_simulations: int = 1000,
    c_uct: float = 1.4,
    seed: int | np.random.Generator = 0,
) -> int:
    """Plain UCT MCTS (random rollouts): the most-visited move from the position after `moves`.

    Args:
      game: ``"connect_four"`` / ``"tic_tac_toe"``, or a :class:`PyBoardGame` in progress (then
        `moves` is ignored).
      moves: the position as the list of moves played so far.
      num_simulations: selection-expansion-rollout-backup passes.
      c_uct: exploration constant of UCB1.
      seed: an int seed or a numpy Generator (rollout and tie randomness).
    """
    root_game = game.copy() if isinstance(game, PyBoardGame) else PyBoardGame(game, moves)
    if root_game.done:
        raise ValueError("the game is already over")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    root = _Node(root_game, mover=1 - root_game.to_move)
    for _ in range(num_simulations):
        g, node, path = root_game.copy(), root, [root]
        while not node.untried and node.children:  # selection
            log_n = math.log(node.visits)
            m, node = max(
                node.children.items(),
                key=lambda kv: kv[1].wins / kv[1].visits + c_uct * math.sqrt(log_n / kv[1].visits),
            )
            g.play(m)
            path.append(node)
        if node.untried:  # expansion
            m = node.untried.pop(int(rng.integers(len(node.untried))))
            mover = g.to_move
            g.play(m)
            child = _Node(g, mover)
            node.children[m] = child
            node, path = child, [*path, child]
        while not g.done:  # rollout
            legal = [m for m, ok in enumerate(g.legal_moves()) if ok]
            g.play(legal[int(rng.integers(len(legal)))])
        for n in path:  # backup
            n.visits += 1
            n.wins += 0.5 if g.winner is None else float(g.winner == n.mover)
    return max(root.children, key=lambda m: root.children[m].visits)
