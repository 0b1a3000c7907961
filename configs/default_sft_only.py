"""Control for the main job (configs/default.py): the same 256 worked solutions, imitation only, for as long
as the main job's imitation plus RL takes in wall-clock (SFT steps are cheaper than RL steps).

python -m jaxrl_reason.train --config configs/default_sft_only.py --workdir workdirs/default_sft_only
"""

from configs.default import get_config as _main_job


def get_config():
    c = _main_job()
    c.algorithm = "none"
    c.total_steps = 2000
    c.sft.steps = 2000
    c.eval_every = 200
    c.checkpoint_every = 500
    return c
