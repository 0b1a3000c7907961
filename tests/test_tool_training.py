"""Training on a tool env (#19): a host tool that raises does not stop a GRPO run and every failure is counted."""

import jax
import numpy as np

import jaxrl_reason as jr
from jaxrl_reason.envs.tools import HostTool, registered_tools
from jaxrl_reason.run.metrics import read_metrics
from jaxrl_reason.training.loop import train
from tests.test_train import tiny_config

CALLS = []


def _always_raises(text: str) -> str:
    CALLS.append(text)
    raise RuntimeError("this tool is broken")


if "broken" not in registered_tools():
    jr.register_tool("broken", lambda: HostTool("broken", _always_raises, open="{", close="}", timeout_s=1.0))


def test_a_raising_host_tool_does_not_stop_grpo_and_is_counted(tmp_path):
    config = tiny_config(algorithm="grpo", total_steps=6, sft__steps=2, checkpoint_every=6, eval_every=6)
    config.env_id = "multiply-v0"
    config.env_kwargs = {"num_digits": 1, "multiplier_digits": 1, "tools": ("broken",)}
    config.rl.num_problems, config.rl.group_size, config.rl.temperature = 4, 4, 2.0
    train(config, str(tmp_path), progress=False)
    records = [r for r in read_metrics(str(tmp_path)) if "rl_tool_calls" in r]
    assert len(records) == 4  # every RL update logged the tool's use
    calls = sum(r["rl_tool_calls"] for r in records) * 16  # per-response means over 16 responses
    errors = sum(r["rl_tool_errors"] for r in records) * 16
    assert calls > 0 and np.isclose(errors, calls)  # every call failed, and each was counted
    assert CALLS  # the tool really ran (calls longer than max_call_length fail without reaching it)
    assert jax.device_get(records[-1]["step"]) == 6
