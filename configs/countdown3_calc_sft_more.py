"""Control for configs/countdown3_calc_star.py: more imitation of the same teacher (configs/countdown3_calc_teacher.py)
from the same checkpoint, at the RL phase's learning rate (constant after a warm-up), for the same wall-clock; the
settings of configs/countdown3_sft_more.py.

python -m jaxrl_reason.train --config configs/countdown3_calc_sft_more.py --workdir workdirs/countdown3_calc_sft_more
"""

from configs.countdown3_calc_teacher import get_config as _imitation
from configs.countdown3_sft_more import more_imitation


def get_config():
    return more_imitation(_imitation(), "workdirs/countdown3_calc_teacher")
