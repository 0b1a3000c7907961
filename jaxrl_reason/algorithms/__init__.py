"""Training algorithms as pure targets and losses (no loops, no I/O); the loops are in ``jaxrl_reason.training``."""

from jaxrl_reason.algorithms.alphazero import alphazero_loss, value_targets
from jaxrl_reason.algorithms.distill import distill_loss
from jaxrl_reason.algorithms.grpo import (
    aggregate_loss,
    group_advantages,
    group_rows,
    informative_groups,
    k3_kl,
    policy_gradient_loss,
    process_advantages,
    select_informative_groups,
    token_log_probs,
    truncated_importance_weights,
)
from jaxrl_reason.algorithms.prm import mc_labels, prm_loss, prm_targets, step_boundaries
from jaxrl_reason.algorithms.sft import response_targets, sft_loss
from jaxrl_reason.algorithms.star import accepted_mask, star_loss, star_targets

__all__ = [
    "accepted_mask",
    "aggregate_loss",
    "alphazero_loss",
    "distill_loss",
    "group_advantages",
    "group_rows",
    "informative_groups",
    "k3_kl",
    "mc_labels",
    "policy_gradient_loss",
    "prm_loss",
    "prm_targets",
    "process_advantages",
    "response_targets",
    "select_informative_groups",
    "sft_loss",
    "star_loss",
    "star_targets",
    "step_boundaries",
    "token_log_probs",
    "truncated_importance_weights",
    "value_targets",
]
