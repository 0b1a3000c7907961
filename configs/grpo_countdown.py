"""Countdown with 3 numbers: SFT on solver traces, then GRPO (RLOO: --config.algorithm=rloo).

python -m jaxrl_reason.train --config configs/grpo_countdown.py --workdir workdirs/grpo_countdown
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "countdown-v0"
    c.env_kwargs.num_numbers = 3
    c.algorithm = "grpo"
    c.total_steps = 1500
    c.sft.steps = 1000
    c.sft.batch_size = 64
    c.sft.num_examples = 16384
    c.optim.learning_rate = 1e-3
    c.rl.group_size = 8
    c.rl.num_problems = 16
    c.rl.updates_per_batch = 2
    c.rl.clip_eps = 0.2
    c.rl.kl_coef = 0.01
    c.rl.temperature = 1.0
    c.eval.num_problems = 512
    c.checkpoint_every = 250
    c.eval_every = 250
    c.log_every = 10
    return c
