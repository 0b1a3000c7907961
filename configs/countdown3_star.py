"""The RL phase of the countdown recipe: expert iteration (STaR) from the imitation run of configs/countdown3.py.

python -m jaxrl_reason.train --config configs/countdown3.py --workdir workdirs/countdown3
python -m jaxrl_reason.train --config configs/countdown3_star.py --workdir workdirs/countdown3_star

Each update samples 8 responses to 16 fresh problems (never held-out ones), keeps those the verifier accepts
and imitates them; the value head learns every sample's reward (an outcome reward model for blind test-time
search). The control, more imitation for the same wall-clock, is configs/countdown3_sft_more.py.
"""

from configs.countdown3 import get_config as _imitation


def get_config():
    return star_phase(_imitation(), "workdirs/countdown3")


def star_phase(c, init_workdir: str):
    """`c` (an imitation recipe) turned into its STaR phase from the latest checkpoint of `init_workdir`."""
    c.init.workdir = init_workdir
    c.algorithm = "star"
    c.total_steps = 40  # about 16 minutes here (the control gets the same wall-clock)
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
