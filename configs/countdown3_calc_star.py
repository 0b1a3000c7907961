"""The RL phase past a teacher that gives up (configs/countdown3_calc_teacher.py): expert iteration (STaR) from its
imitation checkpoint on fresh problems (never held-out ones), all of them, the ones the teacher never showed
included. The control, more imitation for the same wall-clock, is configs/countdown3_calc_sft_more.py.

python -m jaxrl_reason.train --config configs/countdown3_calc_teacher.py --workdir workdirs/countdown3_calc_teacher
python -m jaxrl_reason.train --config configs/countdown3_calc_star.py --workdir workdirs/countdown3_calc_star
"""

from configs.countdown3_calc_teacher import get_config as _imitation


def get_config():
    c = _imitation()
    c.init.workdir = "workdirs/countdown3_calc_teacher"  # the imitation run's latest checkpoint
    c.algorithm = "star"
    c.total_steps = 40
    c.sft.steps = 0
    c.rl.num_problems = 16
    c.rl.group_size = 8
    c.rl.temperature = 1.0
    c.rl.updates_per_batch = 1
    c.rl.learning_rate = 2e-4
    c.rl.warmup_steps = 10
    c.star.value_weight = 0.5
    c.eval_every = 20
    c.checkpoint_every = 20
    return c
