"""Control for configs/countdown3_star.py: more imitation of the same demonstrations from the same checkpoint,
at the RL phase's learning rate (constant after a warm-up), for the same wall-clock.

python -m jaxrl_reason.train --config configs/countdown3_sft_more.py --workdir workdirs/countdown3_sft_more
"""

from configs.countdown3 import get_config as _imitation


def get_config():
    return more_imitation(_imitation(), "workdirs/countdown3")


def more_imitation(c, init_workdir: str):
    """`c` (an imitation recipe) continued from `init_workdir` at the RL phase's rate (the control of STaR)."""
    c.init.workdir = init_workdir
    c.algorithm = "none"
    c.total_steps = 500  # the wall-clock of the 40 STaR updates
    c.sft.steps = 500
    c.optim.learning_rate = 2e-4
    c.optim.warmup_steps = 10
    c.optim.end_learning_rate_ratio = 1.0  # constant after the warm-up, like the RL phase's rate
    c.eval_every = 100
    c.checkpoint_every = 100
    return c
