"""Multiplication (3 by 2 digits) with the calculator tool: the same long-multiplication steps as
configs/multiply.py, but each result is written by the environment (``[347*5=`` -> ``1735]``), and the
imitation loss skips those tokens. Same model, steps and problems as the control.

python -m jaxrl_reason.train --config configs/multiply_tool.py --workdir workdirs/multiply_tool
"""

from configs.multiply import get_config as _control


def get_config():
    c = _control()
    c.env_kwargs.tools = ("calc",)
    return c
