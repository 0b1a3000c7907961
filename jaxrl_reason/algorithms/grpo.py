"""GRPO and RLOO: policy gradients with verifiable rewards, group baselines and PPO-style clipping.

One iteration samples ``G`` responses for each of ``num_problems`` problems with :func:`jr.rollout`
under the current params (the behaviour policy), scores them with the env's verifier, and turns the
rewards of each group into advantages:

* GRPO (group-normalized): ``A_i = (r_i - mean_g r) / (std_g r + eps)`` (population std);
* RLOO (leave-one-out): ``A_i = r_i - mean_{j != i} r_j = G/(G-1) * (r_i - mean_g r)``.

Every response token of sample ``i`` gets ``A_i``. The loss is the clipped surrogate of PPO against the
behaviour log-probs, averaged over all valid response tokens of the batch (token-level averaging)::

    ratio = exp(log pi_theta(a_t) - log pi_old(a_t))
    L = -mean_t min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A) + kl_coef * mean_t k3

with the ``k3`` estimator of ``KL(pi_theta || pi_ref)``: ``exp(lr) - lr - 1``, ``lr = log pi_ref - log pi_theta``
(unbiased, always >= 0), against a frozen reference policy (the params when RL starts).
All functions are pure; the training loop (:mod:`jaxrl_reason.training`) jits them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.algorithms.common import gather_steps, masked_mean, step_positions
from jaxrl_reason.types import Array

ESTIMATORS = ("grpo", "rloo")


def group_advantages(rewards: Array, *, estimator: str = "grpo", eps: float = 1e-6) -> Array:
    """Per-sample advantages from rewards ``[N, G]`` (N problems, G samples each) -> ``[N, G]``.

    GRPO: ``(r - mean) / (std + eps)``; RLOO: ``r_i - mean_{j != i} r_j`` (needs ``G >= 2``). A group
    whose rewards are all equal gets zero advantage under both.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected [num_problems, group_size], got shape {rewards.shape}")
    g = rewards.shape[1]
    rewards = rewards.astype(jnp.float32)
    mean = rewards.mean(axis=1, keepdims=True)
    if estimator == "grpo":
        std = rewards.std(axis=1, keepdims=True)
        return (rewards - mean) / (std + eps)
    if g < 2:
        raise ValueError(f"RLOO needs a group size >= 2, got {g}")
    others = (rewards.sum(axis=1, keepdims=True) - rewards) / (g - 1)
    return rewards - others


def token_log_probs(logits: Array, prompt_length: Array, actions: Array) -> Array:
    """``log pi(a_t)`` of each response step from a full forward: logits ``[B, L, A]`` -> ``[B, T]``."""
    pos = step_positions(prompt_length, actions.shape[1])
    log_p = jax.nn.log_softmax(gather_steps(logits, pos).astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(log_p, actions[..., None], axis=-1)[..., 0]


def k3_kl(log_p: Array, ref_log_p: Array) -> Array:
    """Per-token ``k3`` estimate of ``KL(pi || pi_ref)`` at tokens sampled from pi: ``e^x - x - 1``, x = ref - p."""
    x = ref_log_p - log_p
    return jnp.exp(x) - x - 1.0


def policy_gradient_loss(
    log_p: Array,
    old_log_p: Array,
    advantages: Array,
    valid: Array,
    *,
    clip_eps: float = 0.2,
    ref_log_p: Array | None = None,
    kl_coef: float = 0.0,
) -> tuple[Array, dict]:
    """The clipped surrogate (+ optional k3 KL), token-averaged over valid steps.

    Args:
      log_p: ``[B, T]`` log-probs of the taken actions under the params being trained.
      old_log_p: ``[B, T]`` the behaviour policy's (constants).
      advantages: ``[B]`` per sample (broadcast over its tokens) or ``[B, T]``.
      valid: ``[B, T]`` bool: response tokens that count.
      clip_eps: PPO clip range.
      ref_log_p: ``[B, T]`` the reference policy's log-probs (None: no KL term).
      kl_coef: weight of the KL term.
    Returns:
      ``(loss, metrics)`` with ``pg_loss``, ``kl``, ``clip_fraction``, ``ratio``.
    """
    adv = advantages if advantages.ndim == 2 else advantages[:, None]
    adv = jnp.broadcast_to(adv, log_p.shape).astype(jnp.float32)
    ratio = jnp.exp(log_p - jax.lax.stop_gradient(old_log_p))
    clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    surrogate = jnp.minimum(ratio * adv, clipped * adv)
    pg_loss = -masked_mean(surrogate, valid)
    metrics = {
        "pg_loss": pg_loss,
        "clip_fraction": masked_mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32), valid),
        "ratio": masked_mean(ratio, valid),
    }
    loss = pg_loss
    if ref_log_p is not None:
        kl = masked_mean(k3_kl(log_p, jax.lax.stop_gradient(ref_log_p)), valid)
        loss = loss + kl_coef * kl
        metrics["kl"] = kl
    metrics["loss"] = loss
    return loss, metrics
