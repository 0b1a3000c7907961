"""A teacher that gives up: countdown with 3 numbers and the calculator (configs/countdown3_calc.py), but the
teacher demonstrates only the problems it solves within two numbers (traces of at most 182 tokens: 85% of
problems; a third number's block never appears). Imitation cannot go past its teacher; the RL phase
(configs/countdown3_calc_star.py) can, and its control (configs/countdown3_calc_sft_more.py) is more imitation.

python -m jaxrl_reason.train --config configs/countdown3_calc_teacher.py --workdir workdirs/countdown3_calc_teacher
"""

from configs.countdown3_calc import get_config as _full_teacher


def get_config():
    c = _full_teacher()
    # of 4,000 default problems: every two-block trace (<= 181 tokens), no three-block one (>= 183)
    c.sft.demo_max_tokens = 182
    c.total_steps = 1000
    c.sft.steps = 1000
    c.checkpoint_every = 500
    c.eval_every = 1000
    return c
