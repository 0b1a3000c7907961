"""jaxrl_reason: teach small transformers to reason with reinforcement learning and search, in JAX.

Everything users need is importable from here::

    import jaxrl_reason as jr
    env = jr.make("countdown-v0")
"""

from jaxrl_reason import _xla_setup

if _xla_setup.started_as_cli():  # before jax is imported: use all CPU cores (see _xla_setup)
    _xla_setup.set_default_cpu_devices()

from jaxrl_reason.algorithms.distill import distill_loss  # noqa: E402
from jaxrl_reason.algorithms.grpo import group_advantages, k3_kl, policy_gradient_loss  # noqa: E402
from jaxrl_reason.algorithms.prm import PolicyWithPRM, exact_step_labels, load_prm, mc_labels, save_prm  # noqa: E402
from jaxrl_reason.checkpoint import Checkpointer  # noqa: E402
from jaxrl_reason.config import ConfigError, base_config, load_config
from jaxrl_reason.datasets import read_problems, write_problems
from jaxrl_reason.envs import (
    ASCII_TOKENIZER,
    DEFAULT_TOKENIZER,
    ConnectFour,
    HostVerifiedTask,
    ReasoningTask,
    TicTacToe,
    TokenEnv,
    Tokenizer,
    api_test,
    make,
    register,
    register_family,
    registered_envs,
)
from jaxrl_reason.evaluation import Agent, evaluate
from jaxrl_reason.models import KVCache, LayerSegment, PolicyValueTransformer, TransformerConfig, rollout
from jaxrl_reason.parallel import make_mesh
from jaxrl_reason.prm_training import fit_prm
from jaxrl_reason.search import DecodeResult, decode, mcts_policy, random_rollout_value
from jaxrl_reason.selfplay import selfplay
from jaxrl_reason.training import TrainState, train
from jaxrl_reason.ttc import sweep as ttc_sweep
from jaxrl_reason.types import EnvSpec, EnvState, SearchOutput, Trajectory

__version__ = "0.1.0"

__all__ = [
    "ASCII_TOKENIZER",
    "Agent",
    "Checkpointer",
    "ConfigError",
    "ConnectFour",
    "DEFAULT_TOKENIZER",
    "DecodeResult",
    "EnvSpec",
    "EnvState",
    "HostVerifiedTask",
    "KVCache",
    "LayerSegment",
    "PolicyValueTransformer",
    "PolicyWithPRM",
    "ReasoningTask",
    "SearchOutput",
    "TicTacToe",
    "TokenEnv",
    "Tokenizer",
    "TrainState",
    "Trajectory",
    "TransformerConfig",
    "api_test",
    "base_config",
    "decode",
    "distill_loss",
    "evaluate",
    "exact_step_labels",
    "fit_prm",
    "group_advantages",
    "k3_kl",
    "load_config",
    "load_prm",
    "make",
    "make_mesh",
    "mc_labels",
    "mcts_policy",
    "policy_gradient_loss",
    "random_rollout_value",
    "read_problems",
    "register",
    "register_family",
    "registered_envs",
    "rollout",
    "save_prm",
    "selfplay",
    "train",
    "ttc_sweep",
    "write_problems",
]
