"""Token-MDP environments: template, registry, tokenizers (characters, BPE), tasks and games."""

from jaxrl_reason.envs.adapters import ASCII_TOKENIZER, HostVerifiedTask, RetokenizedTask, with_tokenizer
from jaxrl_reason.envs.api_test import api_test
from jaxrl_reason.envs.bpe import BPETokenizer
from jaxrl_reason.envs.core import TokenEnv, tree_select
from jaxrl_reason.envs.games import ConnectFour, TicTacToe
from jaxrl_reason.envs.registry import make, register, register_family, registered_envs
from jaxrl_reason.envs.tasks.base import ReasoningTask
from jaxrl_reason.envs.tokenizer import DEFAULT_TOKENIZER, Tokenizer
from jaxrl_reason.envs.tools import HostTool, Tool, ToolUse, register_tool, registered_tools

__all__ = [
    "ASCII_TOKENIZER",
    "BPETokenizer",
    "ConnectFour",
    "DEFAULT_TOKENIZER",
    "HostTool",
    "HostVerifiedTask",
    "ReasoningTask",
    "RetokenizedTask",
    "TicTacToe",
    "TokenEnv",
    "Tokenizer",
    "Tool",
    "ToolUse",
    "api_test",
    "make",
    "register",
    "register_family",
    "register_tool",
    "registered_envs",
    "registered_tools",
    "tree_select",
    "with_tokenizer",
]
