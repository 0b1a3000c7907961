"""Tic-tac-toe as a token MDP: action = cell 0..8 (row-major), tokens = ``[bos] + moves``.

``X`` (player 0) moves first. See :class:`~jaxrl_reason.envs.games.base.BoardGame` for the token
layout, rewards and openings; the rules live in :mod:`jaxrl_reason.envs.games.rules`.
"""

from __future__ import annotations

from jaxrl_reason.envs.games.base import BoardGame
from jaxrl_reason.envs.games.rules import TIC_TAC_TOE


class TicTacToe(BoardGame):
    """``tic-tac-toe-v0``: A = 9 moves, bos = 9, pad = 10, max_length = 10.

    >>> env = TicTacToe()
    >>> s = env.init_from_problem(env.problem_from_dict({"moves": [4, 0]}))
    >>> print(env.render(s))
    O . .
    . X .
    . . .
    X (player 0) to move
    """

    env_id = "tic-tac-toe-v0"
    rules = TIC_TAC_TOE
