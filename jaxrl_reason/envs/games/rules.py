"""Rules of k-in-a-row board games (tic-tac-toe, connect four) as small pure JAX functions.

A board is a flat ``[rows * cols]`` int32 array in row-major order, row 0 at the top (as rendered):
``-1`` empty, ``0`` a stone of player 0 (``X``), ``1`` a stone of player 1 (``O``). A move is a cell
index (no gravity: tic-tac-toe) or a column (gravity: the stone drops to the lowest empty cell of
the column, connect four). Every function is unbatched and jit/vmap-able; the token-MDP wrapper
lives in :mod:`jaxrl_reason.envs.games.base`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax.numpy as jnp
import numpy as np

from jaxrl_reason.types import Array

EMPTY = -1


@dataclasses.dataclass(frozen=True)
class BoardRules:
    """An m,n,k-game: ``rows x cols`` board, ``k`` in a row wins, optional gravity (hashable)."""

    name: str
    rows: int
    cols: int
    k: int
    gravity: bool

    @property
    def num_cells(self) -> int:
        return self.rows * self.cols

    @property
    def num_moves(self) -> int:
        """A: cells without gravity, columns with gravity."""
        return self.cols if self.gravity else self.num_cells

    @functools.cached_property
    def lines(self) -> np.ndarray:
        """``[num_lines, k]`` int32: cell indices of every winning line (rows, cols, both diagonals)."""
        out = []
        for r in range(self.rows):
            for c in range(self.cols):
                for dr, dc in ((0, 1), (1, 0), (1, 1), (1, -1)):
                    cells = [(r + i * dr, c + i * dc) for i in range(self.k)]
                    if all(0 <= rr < self.rows and 0 <= cc < self.cols for rr, cc in cells):
                        out.append([rr * self.cols + cc for rr, cc in cells])
        return np.asarray(out, np.int32)

    # -- pure JAX rules -------------------------------------------------------------------------------
    def empty_board(self) -> Array:
        """``[num_cells]`` int32 board with every cell empty."""
        return jnp.full((self.num_cells,), EMPTY, jnp.int32)

    def legal_moves(self, board: Array) -> Array:
        """``[num_moves]`` bool: empty cells, or columns whose top cell is empty."""
        if self.gravity:
            return board[: self.cols] == EMPTY
        return board == EMPTY

    def landing_cell(self, board: Array, move: Array) -> Array:
        """[] int32: the cell a (legal) move fills."""
        if not self.gravity:
            return jnp.asarray(move, jnp.int32)
        column = board.reshape(self.rows, self.cols)[:, move]
        filled = jnp.sum(column != EMPTY)
        return ((self.rows - 1 - filled) * self.cols + move).astype(jnp.int32)

    def play(self, board: Array, player: Array, move: Array) -> Array:
        """The board after `player` plays a legal `move` (illegal moves: callers check first)."""
        return board.at[self.landing_cell(board, move)].set(jnp.asarray(player, jnp.int32))

    def is_win(self, board: Array, player: Array) -> Array:
        """[] bool: `player` has k stones in a row somewhere."""
        return jnp.any(jnp.all(board[self.lines] == player, axis=-1))

    def is_full(self, board: Array) -> Array:
        """[] bool: no empty cell left."""
        return jnp.all(board != EMPTY)

    # -- Python helpers (outside jit) -------------------------------------------------------------------
    def render(self, board) -> str:
        """ASCII board: ``X`` player 0, ``O`` player 1, ``.`` empty; move ids printed underneath."""
        b = np.asarray(board).reshape(self.rows, self.cols)
        sym = {EMPTY: ".", 0: "X", 1: "O"}
        lines = [" ".join(sym[int(v)] for v in row) for row in b]
        if self.gravity:
            lines.append(" ".join(str(c) for c in range(self.cols)))
        return "\n".join(lines)


TIC_TAC_TOE = BoardRules("tic_tac_toe", rows=3, cols=3, k=3, gravity=False)
CONNECT_FOUR = BoardRules("connect_four", rows=6, cols=7, k=4, gravity=True)
