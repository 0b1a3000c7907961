"""Training algorithms as pure targets and losses (no loops, no I/O); the loops are in ``jaxrl_reason.training``."""

from jaxrl_reason.algorithms.alphazero import alphazero_loss, value_targets
from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.algorithms.grpo import group_advantages, k3_kl, policy_gradient_loss, token_log_probs
from jaxrl_reason.algorithms.prm import mc_labels, prm_loss, prm_targets, step_boundaries
from jaxrl_reason.algorithms.sft import response_targets, sft_loss

__all__ = [
    "alphazero_loss",
    "distill_loss",
    "group_advantages",
    "k3_kl",
    "mc_labels",
    "policy_gradient_loss",
    "prm_loss",
    "prm_targets",
    "response_targets",
    "sft_loss",
    "step_boundaries",
    "token_log_probs",
    "value_targets",
]
