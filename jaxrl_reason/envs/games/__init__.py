"""Two-player board games as token MDPs (self-play)."""

from jaxrl_reason.envs.games.base import BoardGame, GameAux, Opening
from jaxrl_reason.envs.games.connect_four import ConnectFour
from jaxrl_reason.envs.games.rules import CONNECT_FOUR, TIC_TAC_TOE, BoardRules
from jaxrl_reason.envs.games.tic_tac_toe import TicTacToe

__all__ = ["CONNECT_FOUR", "TIC_TAC_TOE", "BoardGame", "BoardRules", "ConnectFour", "GameAux", "Opening", "TicTacToe"]
