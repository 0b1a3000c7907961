"""AlphaZero expert iteration: the policy imitates the search, the value regresses to the outcome.

Targets from a self-play :class:`~jaxrl_reason.types.Trajectory`: the search policy π at every step
and ``z`` = the episode's final return for the player who was to move (so in two-player games the
loser's steps get −1 and the winner's +1; in reasoning tasks ``z`` is the verifier's reward).
Loss: ``CE(π, policy) + value_weight * (value - z)²`` (or the two-hot cross-entropy of a categorical
value head), averaged over valid steps. Steps whose token the env wrote (``traj.env_written``: a tool's answer,
the only legal action there) are left out of the policy cross-entropy; the value loss keeps them, since
they are states of the episode like any other and their outcome ``z`` is just as real (search evaluates
the value head at such states too).

With ``value_target_mix = m > 0`` the value target is ``(1 - m) * z + m * q``, ``q`` the search's root value at
that step (``traj.values``, from the same player's view): q has far less variance than a single game's outcome,
at the price of the search's bias (Oracle's "Lessons from AlphaZero" found the average of z and q trained
connect four faster than either).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from jaxrl_reason.algorithms.common import gather_steps, masked_mean, policy_mask, step_positions
from jaxrl_reason.models import two_hot
from jaxrl_reason.types import Array, Trajectory


def value_targets(traj: Trajectory, value_target_mix: float = 0.0) -> Array:
    """[B, T] float32: the outcome of each episode seen by the player to move at each step, mixed with the
    search's root values ``traj.values`` (same view) by ``value_target_mix``."""
    returns = traj.returns  # [B, P]
    z = jnp.take_along_axis(returns, traj.players, axis=1)
    if value_target_mix == 0.0:
        return z
    return (1.0 - value_target_mix) * z + value_target_mix * traj.values.astype(jnp.float32)


def alphazero_loss(
    logits: Array,
    values: Array,
    traj: Trajectory,
    *,
    value_weight: float = 1.0,
    policy_weight: float | Array = 1.0,
    value_logits: Array | None = None,
    value_target_mix: float = 0.0,
) -> tuple[Array, dict]:
    """Expert-iteration loss of a full forward over ``traj.tokens``.

    Args:
      logits: [B, L, A] policy logits of the full forward.
      values: [B, L] value predictions of the full forward.
      traj: self-play trajectories with ``policy [B, T, A]`` (and ``env_written [B, T]``, or None).
      value_weight: weight of the value regression.
      policy_weight: weight of the policy cross-entropy (0 during a value warm-up).
      value_logits: [B, L, bins] of a categorical value head: the value loss is then the
        cross-entropy to the two-hot encoding of z instead of the squared error.
      value_target_mix: weight ``m`` of the search's root value in the value target (see the module doc).
    Returns:
      ``(loss, metrics)``.
    """
    num_steps = traj.actions.shape[1]
    pos = step_positions(traj.prompt_length, num_steps)
    step_logits = gather_steps(logits, pos).astype(jnp.float32)  # [B, T, A]
    step_values = gather_steps(values, pos).astype(jnp.float32)  # [B, T]
    pi = traj.policy.astype(jnp.float32)
    log_p = jax.nn.log_softmax(step_logits, axis=-1)
    policy_ce = -(pi * log_p).sum(-1)
    entropy_pi = -(pi * jnp.log(jnp.where(pi > 0, pi, 1.0))).sum(-1)
    z = value_targets(traj, value_target_mix)
    if value_logits is None:
        value_err = (step_values - z) ** 2
    else:
        step_vlogits = gather_steps(value_logits, pos).astype(jnp.float32)
        value_err = optax.softmax_cross_entropy(step_vlogits, two_hot(z, value_logits.shape[-1]))
    chosen = policy_mask(traj.valid, traj.env_written)
    policy_loss = masked_mean(policy_ce, chosen)
    value_loss = masked_mean(value_err, traj.valid)
    loss = policy_weight * policy_loss + value_weight * value_loss
    return loss, {
        "loss": loss,
        "policy_loss": policy_loss,
        "policy_kl": policy_loss - masked_mean(entropy_pi, chosen),
        "value_loss": value_loss,
    }
