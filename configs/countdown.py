"""Countdown with 3-4 numbers: SFT on solver traces, then AlphaZero self-play with search.

SFT alone: add ``--config.algorithm=none --config.total_steps=4000``.
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "countdown-v0"
    c.env_kwargs.num_numbers = (3, 4)
    c.total_steps = 4600
    c.sft.steps = 4000
    c.sft.batch_size = 64
    c.sft.num_examples = 32768
    c.optim.learning_rate = 1e-3
    c.selfplay.num_episodes = 64
    c.selfplay.num_simulations = 16
    c.selfplay.top_k = 8
    c.selfplay.max_depth = 8
    c.selfplay.value_warmup_steps = 200
    c.selfplay.rescale_values = False
    c.eval.num_problems = 500
    c.checkpoint_every = 500
    c.eval_every = 500
    return c
