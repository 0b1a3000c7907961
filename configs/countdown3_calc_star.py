"""The RL phase past a teacher that gives up (configs/countdown3_calc_teacher.py): expert iteration (STaR) from its
imitation checkpoint on fresh problems (never held-out ones), all of them, the ones the teacher never showed
included; the settings of configs/countdown3_star.py. The control, more imitation for the same wall-clock, is
configs/countdown3_calc_sft_more.py.

python -m jaxrl_reason.train --config configs/countdown3_calc_teacher.py --workdir workdirs/countdown3_calc_teacher
python -m jaxrl_reason.train --config configs/countdown3_calc_star.py --workdir workdirs/countdown3_calc_star
"""

from configs.countdown3_calc_teacher import get_config as _imitation
from configs.countdown3_star import star_phase


def get_config():
    return star_phase(_imitation(), "workdirs/countdown3_calc_teacher")
