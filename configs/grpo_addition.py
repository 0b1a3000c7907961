"""2-digit addition: short SFT warm start, then GRPO (RLOO: --config.algorithm=rloo).

python -m jaxrl_reason.train --config configs/grpo_addition.py --workdir workdirs/grpo_addition
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 2
    c.algorithm = "grpo"
    c.total_steps = 400
    c.sft.steps = 200
    c.sft.batch_size = 64
    c.sft.num_examples = 4096
    c.optim.learning_rate = 2e-3
    c.optim.warmup_steps = 50
    c.rl.group_size = 8
    c.rl.num_problems = 16
    c.rl.updates_per_batch = 2
    c.rl.clip_eps = 0.2
    c.rl.kl_coef = 0.0
    c.rl.temperature = 1.0
    c.eval.num_problems = 512
    c.checkpoint_every = 100
    c.eval_every = 100
    c.log_every = 10
    return c
