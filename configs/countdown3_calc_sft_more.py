"""Control for configs/countdown3_calc_star.py: more imitation of the same teacher (configs/countdown3_calc_teacher.py)
from the same checkpoint, at the RL phase's learning rate (constant after a warm-up), for the same wall-clock.

python -m jaxrl_reason.train --config configs/countdown3_calc_sft_more.py --workdir workdirs/countdown3_calc_sft_more
"""

from configs.countdown3_calc_teacher import get_config as _imitation


def get_config():
    c = _imitation()
    c.init.workdir = "workdirs/countdown3_calc_teacher"
    c.algorithm = "none"
    c.total_steps = 500
    c.sft.steps = 500
    c.optim.learning_rate = 2e-4
    c.optim.warmup_steps = 10
    c.optim.end_learning_rate_ratio = 1.0  # constant after the warm-up, like the RL phase's rate
    c.eval_every = 100
    c.checkpoint_every = 100
    return c
