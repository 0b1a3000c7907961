"""Two-player board games as token MDPs (the wrapper around :mod:`jaxrl_reason.envs.games.rules`).

Tokens are ``[bos] + moves played`` (the token of a move is the move id ``0..A-1``; ``bos = A``,
``pad = A + 1``), so the model reads the whole game as a sequence. Player 0 moves first; players
alternate. At the end each player gets ``+1`` win, ``-1`` loss, ``0`` draw (zero-sum); an illegal
move ends the game with ``-1`` for the mover and ``+1`` for the opponent (the template's penalty).

A *problem* is an opening: ``{"moves": [A] ... fixed-size int32 array, "num_moves": []}``, whose
first ``num_moves`` moves are replayed by ``init_from_problem`` and shown in the prompt
(``[bos] + opening``). Its dict form is ``{"moves": [int, ...]}``.
"""

from __future__ import annotations

import functools
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.envs.games.rules import BoardRules
from jaxrl_reason.types import Array, EnvSpec, EnvState, PRNGKey


@struct.dataclass
class Opening:
    """A game's problem: the opening moves (unbatched)."""

    moves: Array  # [num_cells] int32: moves in order, padded with 0 past num_moves
    num_moves: Array  # [] int32


@struct.dataclass
class GameAux:
    """Env-private running state of a board game."""

    board: Array  # [num_cells] int32: -1 empty, 0 / 1 stones of players 0 / 1 (row-major, top row first)
    winner: Array  # [] int32: -1 while running or after a draw, else the winning player


class BoardGame(TokenEnv):
    """Token MDP over a :class:`~jaxrl_reason.envs.games.rules.BoardRules` game.

    Args:
      random_opening_moves: ``sample_problem`` plays this many uniformly random legal moves that do
        not end the game (fewer if, rarely, every legal move would end it); 0 = empty board.
        ``spec.max_prompt_length = 1 + random_opening_moves``. Openings given by hand
        (``problem_from_dict``) may be longer: the game then has fewer moves left, so its tokens
        still fit in ``spec.max_length = 1 + num_cells``.
      vary_opening_length: if True, each opening has a uniformly random length in
        ``[0, random_opening_moves]`` instead of exactly ``random_opening_moves``: self-play then sees
        the empty board, early positions and (after a few random moves) won and lost ones.
    """

    env_id: ClassVar[str]
    rules: ClassVar[BoardRules]

    def __init__(self, *, random_opening_moves: int = 0, vary_opening_length: bool = False):
        k = int(random_opening_moves)
        if not 0 <= k < self.rules.num_cells:
            raise ValueError(f"random_opening_moves must be in [0, {self.rules.num_cells}), got {random_opening_moves}")
        self.random_opening_moves = k
        self.vary_opening_length = bool(vary_opening_length)

    @functools.cached_property
    def spec(self) -> EnvSpec:
        a = self.rules.num_moves
        return EnvSpec(
            env_id=self.env_id,
            num_actions=a,
            vocab_size=a + 2,
            max_length=1 + self.rules.num_cells,
            max_prompt_length=1 + self.random_opening_moves,
            num_players=2,
            pad_id=a + 1,
            bos_id=a,
            eos_id=None,
            illegal_action_penalty=-1.0,
            reward_needs_answer=False,  # the rules decide the winner
        )

    # -- problems ------------------------------------------------------------------------------------
    def sample_problem(self, key: PRNGKey) -> Opening:
        """A random opening of ``random_opening_moves`` moves (or of a random length up to it, with
        ``vary_opening_length``) that leaves the game running."""
        rules, n = self.rules, self.rules.num_cells
        moves = jnp.zeros((n,), jnp.int32)
        if self.random_opening_moves == 0:
            return Opening(moves=moves, num_moves=jnp.int32(0))
        length = jnp.int32(self.random_opening_moves)
        if self.vary_opening_length:
            length = jax.random.randint(jax.random.fold_in(key, n), (), 0, self.random_opening_moves + 1)

        def body(i, carry):
            board, moves, count = carry
            player = count % 2
            ok = jax.vmap(lambda m: ~self._ends_game(board, player, m))(jnp.arange(rules.num_moves))
            ok = ok & rules.legal_moves(board) & (i < length)
            logits = jnp.where(ok, 0.0, -jnp.inf)
            move = jax.random.categorical(jax.random.fold_in(key, i), logits).astype(jnp.int32)
            any_ok = ok.any()
            board = jnp.where(any_ok, rules.play(board, player, move), board)
            moves = moves.at[count].set(jnp.where(any_ok, move, moves[count]))
            return board, moves, count + any_ok.astype(jnp.int32)

        _, moves, count = jax.lax.fori_loop(
            0, self.random_opening_moves, body, (rules.empty_board(), moves, jnp.int32(0))
        )
        return Opening(moves=moves, num_moves=count)

    def _ends_game(self, board: Array, player: Array, move: Array) -> Array:
        after = self.rules.play(board, player, move)
        return self.rules.is_win(after, player) | self.rules.is_full(after)

    def problem_to_dict(self, problem: Opening) -> dict:
        """``{"moves": [int, ...]}`` of one (unbatched) opening."""
        n = int(problem.num_moves)
        return {"moves": [int(m) for m in np.asarray(problem.moves)[:n]]}

    def problem_from_dict(self, problem_dict: dict) -> Opening:
        """Opening from ``{"moves": [int, ...]}``.

        Raises:
          ValueError: if the dict is malformed or a move is illegal (out of range, occupied cell or
            full column, or played after the game ended).
        """
        if not isinstance(problem_dict, dict) or "moves" not in problem_dict:
            raise ValueError(f"expected a dict {{'moves': [int, ...]}}, got {problem_dict!r}")
        moves = list(problem_dict["moves"])
        rules = self.rules
        board = np.full((rules.num_cells,), -1, np.int32)
        for i, m in enumerate(moves):
            if isinstance(m, bool) or not isinstance(m, int | np.integer) or not 0 <= int(m) < rules.num_moves:
                raise ValueError(f"opening move {i} is {m!r}; expected an int in [0, {rules.num_moves})")
            if _py_winner(rules, board) is not None or (board != -1).all():
                raise ValueError(f"opening move {i} ({m}) is played after the game ended: {moves}")
            cell = _py_landing_cell(rules, board, int(m))
            if cell is None:
                raise ValueError(f"opening move {i} ({m}) is illegal (cell or column taken): {moves}")
            board[cell] = i % 2
        padded = np.zeros((rules.num_cells,), np.int32)
        padded[: len(moves)] = moves
        return Opening(moves=jnp.asarray(padded), num_moves=jnp.int32(len(moves)))

    # -- TokenEnv ------------------------------------------------------------------------------------
    def _init(self, problem: Opening) -> EnvState:
        spec, rules = self.spec, self.rules
        idx = jnp.arange(rules.num_cells)
        count = problem.num_moves.astype(jnp.int32)

        def replay(i, carry):
            board, winner = carry
            live = (i < count) & (winner < 0)
            player = i % 2
            after = rules.play(board, player, problem.moves[i])
            won = rules.is_win(after, player)
            return jnp.where(live, after, board), jnp.where(live & won, player, winner)

        board, winner = jax.lax.fori_loop(0, rules.num_cells, replay, (rules.empty_board(), jnp.int32(-1)))
        tokens = jnp.where(idx < count, problem.moves, spec.pad_id).astype(jnp.int32)
        tokens = jnp.concatenate([jnp.full((1,), spec.bos_id, jnp.int32), tokens])
        over = (winner >= 0) | rules.is_full(board)
        return EnvState(
            tokens=tokens,
            length=count + 1,
            prompt_length=count + 1,
            current_player=count % 2,
            legal_action_mask=rules.legal_moves(board),
            rewards=jnp.zeros((2,), jnp.float32),
            terminated=over,
            truncated=jnp.bool_(False),
            problem=problem,
            aux=GameAux(board=board, winner=winner),
        )

    def _step(self, state: EnvState, action: Array) -> EnvState:
        rules = self.rules
        player = state.current_player
        board = rules.play(state.aux.board, player, action)
        won = rules.is_win(board, player)
        over = won | rules.is_full(board)
        sign = jnp.where(won, 1.0, 0.0).astype(jnp.float32)
        rewards = jnp.zeros((2,), jnp.float32).at[player].set(sign).at[1 - player].set(-sign)
        return state.replace(
            current_player=1 - player,
            legal_action_mask=rules.legal_moves(board),
            rewards=rewards,
            terminated=over,
            aux=GameAux(board=board, winner=jnp.where(won, player, state.aux.winner)),
        )

    # -- for humans -----------------------------------------------------------------------------------
    def render(self, state: EnvState) -> str:
        """ASCII picture of one (unbatched) state: the board and whose turn it is or who won."""
        board = self.rules.render(state.aux.board)
        if bool(state.done):
            winner = int(state.aux.winner)
            if winner >= 0:
                status = f"{'XO'[winner]} (player {winner}) won"
            elif bool(np.all(np.asarray(state.aux.board) != -1)):
                status = "draw"
            else:  # the game ended early without a line: an illegal move
                p = int(state.current_player)
                status = f"{'XO'[p]} (player {p}) played an illegal move and lost"
        else:
            p = int(state.current_player)
            status = f"{'XO'[p]} (player {p}) to move"
        return f"{board}\n{status}"


def _py_landing_cell(rules: BoardRules, board: np.ndarray, move: int) -> int | None:
    """The cell `move` fills on a numpy board, or None if the move is illegal."""
    if not rules.gravity:
        return move if board[move] == -1 else None
    empty_rows = [r for r in range(rules.rows) if board[r * rules.cols + move] == -1]
    return max(empty_rows) * rules.cols + move if empty_rows else None


def _py_winner(rules: BoardRules, board: np.ndarray) -> int | None:
    for p in (0, 1):
        if np.any(np.all(board[rules.lines] == p, axis=-1)):
            return p
    return None
