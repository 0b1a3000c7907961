"""Play a trained agent against reference players (perfect minimax, UCT MCTS with random rollouts).

    python -m bench.arena --workdir DIR --opponent minimax --games 1000 --method mcts --num_simulations 64
    python -m bench.arena --workdir DIR --opponent mcts --opponent_simulations 200 --games 100

The agent plays both sides (game ``i`` gives it player ``i % 2``). Games are played in one batch: the
agent acts on all boards at once (one jitted search), the opponent move by move in Python. The
minimax opponent picks uniformly among its optimal moves, so games differ. Games start from the empty
board (``--opening_moves 0``), whatever openings the agent was trained on. Prints JSON with wins, draws
and losses from the agent's side, overall and per side.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from bench.players import mcts_move, ttt_optimal_moves
from jaxrl_reason.envs.registry import make
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import Checkpointer

_GAME_NAMES = {"tic-tac-toe-v0": "tic_tac_toe", "connect-four-v0": "connect_four"}


def make_opponent(kind: str, game: str, *, simulations: int, seed: int):
    rng = np.random.default_rng(seed)
    if kind == "minimax":
        if game != "tic_tac_toe":
            raise ValueError("the minimax opponent plays tic-tac-toe only")
        return lambda moves: int(rng.choice(sorted(ttt_optimal_moves(moves))))
    if kind == "mcts":
        return lambda moves: int(mcts_move(game, moves, num_simulations=simulations, seed=int(rng.integers(2**31))))
    if kind == "random":
        return None  # handled with the legal mask
    raise ValueError(f"unknown opponent {kind!r}; expected minimax, mcts or random")


def play(
    agent: Agent,
    opponent: str,
    *,
    num_games: int,
    method: str,
    num_simulations: int,
    opponent_simulations: int = 200,
    seed: int = 0,
    opening_moves: int = 0,
    rollouts: int | None = None,
    rollout_weight: float | None = None,
    max_depth: int | None = None,
    algorithm: str | None = None,
) -> dict:
    # the arena's own games: `opening_moves` random moves before the agent and opponent take over
    env = make(agent.env.spec.env_id, random_opening_moves=opening_moves)
    game = _GAME_NAMES.get(env.spec.env_id)
    if game is None:
        raise ValueError(f"the arena plays {sorted(_GAME_NAMES)}, not {env.spec.env_id}")
    opp = make_opponent(opponent, game, simulations=opponent_simulations, seed=seed)
    rng = np.random.default_rng(seed + 1)
    agent_player = np.arange(num_games) % 2
    states = jax.vmap(env.init)(jax.random.split(jax.random.PRNGKey(seed), num_games))
    step = jax.jit(jax.vmap(env.step))
    returns = np.zeros((num_games, 2), np.float32)
    key = jax.random.PRNGKey(seed + 2)
    for t in range(env.spec.max_length):
        done = np.asarray(states.done)
        if done.all():
            break
        given = dict(rollouts=rollouts, rollout_weight=rollout_weight, max_depth=max_depth, algorithm=algorithm)
        # the run's own search (Agent.search) except what was asked for
        search = {"num_simulations": num_simulations, **{k: v for k, v in given.items() if v is not None}}
        mine = agent.act(jax.random.fold_in(key, t), states, method=method, **(search if method == "mcts" else {}))
        mine = np.asarray(mine)
        tokens, length = np.asarray(states.tokens), np.asarray(states.length)
        player, legal = np.asarray(states.current_player), np.asarray(states.legal_action_mask)
        actions = mine.copy()
        for b in np.flatnonzero(~done & (player != agent_player)):
            moves = [int(m) for m in tokens[b, 1 : length[b]]]
            actions[b] = opp(moves) if opp else int(rng.choice(np.flatnonzero(legal[b])))
        states = step(states, jnp.asarray(actions, jnp.int32))
        returns += np.asarray(states.rewards)
    mine = returns[np.arange(num_games), agent_player]
    out = {
        "games": num_games,
        "wins": int((mine > 0).sum()),
        "draws": int((mine == 0).sum()),
        "losses": int((mine < 0).sum()),
    }
    for side in (0, 1):
        m = mine[agent_player == side]
        out[f"as_player_{side}"] = {
            "wins": int((m > 0).sum()),
            "draws": int((m == 0).sum()),
            "losses": int((m < 0).sum()),
        }
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", required=True)
    p.add_argument("--opponent", choices=("minimax", "mcts", "random"), default="minimax")
    p.add_argument("--games", type=int, default=1000)
    p.add_argument("--method", choices=("mcts", "greedy", "sample"), default="mcts")
    p.add_argument("--num_simulations", type=int, default=64)
    p.add_argument("--opponent_simulations", type=int, default=200)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--opening_moves", type=int, default=0, help="random moves before play starts (0: empty board)")
    p.add_argument("--rollouts", type=int, default=None, help="agent MCTS: random playouts per leaf (default: run)")
    p.add_argument("--rollout_weight", type=float, default=None, help="agent MCTS: rollouts' share of a leaf's value")
    p.add_argument("--max_depth", type=int, default=None, help="agent MCTS: depth bound (default: the run's)")
    p.add_argument("--algorithm", choices=("gumbel", "muzero"), default=None, help="agent MCTS (default: the run's)")
    p.add_argument(
        "--untrained",
        action="store_true",
        help="ablation: the run's model with freshly initialised params (prior ~uniform, value ~0)",
    )
    p.add_argument("--step", type=int, default=None, help="checkpoint step to play (default: the latest)")
    args = p.parse_args(argv)
    step = args.step
    if step is None:
        with Checkpointer(args.workdir, read_only=True) as ckpt:
            step = ckpt.latest_good_step()
    agent = Agent.load(args.workdir, step=step)
    if args.untrained:
        agent = dataclasses.replace(agent, params=agent.model.init(jax.random.PRNGKey(args.seed)), _jitted={})
    t0 = time.time()
    result = play(
        agent,
        args.opponent,
        num_games=args.games,
        method=args.method,
        num_simulations=args.num_simulations,
        opponent_simulations=args.opponent_simulations,
        seed=args.seed,
        opening_moves=args.opening_moves,
        rollouts=args.rollouts,
        rollout_weight=args.rollout_weight,
        max_depth=args.max_depth,
        algorithm=args.algorithm,
    )
    print(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "machine": platform.machine(),
                "jax": jax.__version__,
                "env": agent.env.spec.env_id,
                "step": "untrained" if args.untrained else step,
                "opponent": args.opponent,
                "method": args.method,
                "num_simulations": args.num_simulations,
                "opening_moves": args.opening_moves,
                "rollouts": args.rollouts,
                "rollout_weight": args.rollout_weight,
                "max_depth": args.max_depth,
                "algorithm": args.algorithm,
                "wall_s": round(time.time() - t0, 1),
                **result,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
