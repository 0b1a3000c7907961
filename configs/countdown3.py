"""Countdown with 3 numbers: imitation of backward-check traces (each last number in turn: what the other two
must make, what they make), 3,000 steps with length-bucketed batches. Held-out 0.456 greedy pass@1 (500
problems, seed 0; docs/RESULTS.md). The RL phase is configs/countdown3_star.py, its control
configs/countdown3_sft_more.py.

python -m jaxrl_reason.train --config configs/countdown3.py --workdir workdirs/countdown3

Other demonstrations: ``--config.env_kwargs.demo_style=search`` (stream of search, closest first) or ``=path``
(the solution's steps only).
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "countdown-v0"
    c.env_kwargs.num_numbers = (3, 3)
    c.env_kwargs.demo_style = "backward"
    c.model.overrides.num_layers = 4
    c.algorithm = "none"
    c.total_steps = 3000
    c.sft.steps = 3000
    c.sft.batch_size = 64
    c.sft.num_examples = 65536
    c.sft.bucket_widths = (80, 144)
    c.optim.learning_rate = 1e-3
    c.eval.num_problems = 500
    c.checkpoint_every = 1000
    c.eval_every = 1000
    return c
