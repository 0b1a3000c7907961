"""Multiplication (3 by 2 digits) by long multiplication, imitation only, without a tool: the model computes
every partial product and sum itself. Control of configs/multiply_tool.py (same steps, model and data).

python -m jaxrl_reason.train --config configs/multiply.py --workdir workdirs/multiply
"""

from jaxrl_reason.config import base_config


def get_config():
    c = base_config()
    c.env_id = "multiply-v0"
    c.algorithm = "none"
    c.total_steps = 1500
    c.sft.steps = 1500
    c.sft.batch_size = 64
    c.sft.num_examples = 16384
    c.eval.num_problems = 500
    c.checkpoint_every = 500
    c.eval_every = 500
    return c
