"""Connect four as a token MDP: action = column 0..6, 6 rows, tokens = ``[bos] + moves``.

``X`` (player 0) moves first; a stone drops to the lowest empty cell of its column; a full column
is an illegal move. See :class:`~jaxrl_reason.envs.games.base.BoardGame` for the token layout,
rewards and openings; the rules live in :mod:`jaxrl_reason.envs.games.rules`.
"""

from __future__ import annotations

from jaxrl_reason.envs.games.base import BoardGame
from jaxrl_reason.envs.games.rules import CONNECT_FOUR


class ConnectFour(BoardGame):
    """``connect-four-v0``: A = 7 columns, bos = 7, pad = 8, max_length = 43.

    >>> env = ConnectFour()
    >>> s = env.init_from_problem(env.problem_from_dict({"moves": [3, 3, 2]}))
    >>> print(env.render(s))
    . . . . . . .
    . . . . . . .
    . . . . . . .
    . . . . . . .
    . . . O . . .
    . . X X . . .
    0 1 2 3 4 5 6
    O (player 1) to move
    """

    env_id = "connect-four-v0"
    rules = CONNECT_FOUR
