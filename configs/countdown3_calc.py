"""Countdown with 3 numbers and the calculator tool: imitation of backward-check traces whose every value the
environment writes (``[22-7=`` -> ``15]``), so the model learns the search (which equations to write, when a
value it made is one it needs) and no arithmetic. Same task, model and evaluation as configs/countdown3.py.

python -m jaxrl_reason.train --config configs/countdown3_calc.py --workdir workdirs/countdown3_calc
"""

from configs.countdown3 import get_config as _no_tool


def get_config():
    c = _no_tool()
    c.env_kwargs.tools = ("calc",)
    c.env_kwargs.max_response_length = 272  # the longest trace of 4,000 default problems is 267 tokens
    c.total_steps = 2000
    c.sft.steps = 2000
    c.sft.bucket_widths = (112, 192)
    c.checkpoint_every = 1000
    c.eval_every = 1000
    return c
