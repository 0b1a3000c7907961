"""Countdown with 3 numbers, SFT alone on stream-of-search demonstrations (closest-first search traces).

python -m jaxrl_reason.train --config configs/countdown3.py --workdir workdirs/countdown3

Compare with final-path demonstrations: ``--config.env_kwargs.demo_style=path``.
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "countdown-v0"
    c.env_kwargs.num_numbers = (3, 3)
    c.env_kwargs.demo_style = "search"
    c.env_kwargs.search_order = "closest"  # "dfs" | "bfs" | "closest"
    c.env_kwargs.max_response_length = 256  # the trace cap is this minus 1 (EOS); ~2% of traces are cut
    c.algorithm = "none"
    c.total_steps = 1500
    c.sft.steps = 1500
    c.sft.batch_size = 64
    c.sft.num_examples = 32768
    c.optim.learning_rate = 1e-3
    c.eval.num_problems = 500
    c.checkpoint_every = 500
    c.eval_every = 500
    return c
