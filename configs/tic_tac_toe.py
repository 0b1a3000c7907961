"""Tic-tac-toe by AlphaZero self-play from scratch (no demonstrations)."""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "tic-tac-toe-v0"
    # Self-play starts after 0-4 random moves: without them it converges to one drawn line and the value
    # head never sees the positions a perfect opponent steers into (docs/RESULTS.md).
    c.env_kwargs.random_opening_moves = 4
    c.env_kwargs.vary_opening_length = True
    c.sft.steps = 0
    c.total_steps = 3000
    c.optim.learning_rate = 1e-3
    c.selfplay.num_episodes = 128
    c.selfplay.num_simulations = 32
    c.selfplay.top_k = 9
    c.selfplay.max_depth = 9
    c.selfplay.updates_per_iteration = 4
    c.selfplay.batch_size = 128
    c.selfplay.replay_iterations = 8
    c.checkpoint_every = 250
    c.eval_every = 250
    return c
