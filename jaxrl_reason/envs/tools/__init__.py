"""Tools the model can call inside a response (``jr.make(env_id, tools=("calc",))``)."""

from jaxrl_reason.envs.tools.base import CALL_END, ERROR_ANSWER, Tool, make_tool, register_tool, registered_tools
from jaxrl_reason.envs.tools.calculator import Calculator, calculate_text
from jaxrl_reason.envs.tools.host_tool import HostTool
from jaxrl_reason.envs.tools.tool_use import ToolState, ToolUse, with_tools

register_tool("calc", Calculator)

__all__ = [
    "CALL_END",
    "ERROR_ANSWER",
    "Calculator",
    "HostTool",
    "Tool",
    "ToolState",
    "ToolUse",
    "calculate_text",
    "make_tool",
    "register_tool",
    "registered_tools",
    "with_tools",
]
