"""STaR / ReST-EM expert iteration: fine-tune on the model's own verified samples only.

One iteration (the loop's business) samples responses to a set of problems with :func:`jr.rollout`, scores
them with the env's verifier, and takes SFT steps on the accepted ones (reward == 1), optionally at most
``max_per_problem`` per problem so that easy problems do not dominate. STaR fine-tunes the current params;
ReST-EM restarts each iteration's fine-tuning from the base params. Both use the same target and loss:

    L = sum_{b accepted, t in response_b} CE(logits[b, t], tokens[b, t+1]) / #(response tokens of accepted b)

(the SFT loss of :mod:`jaxrl_reason.algorithms.sft` restricted to accepted responses; 0 when none is).
All functions are pure and static-shaped, so the loop can jit them.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_reason.algorithms.sft import response_targets, sft_loss
from jaxrl_reason.types import Array


def accepted_mask(
    rewards: Array,
    *,
    problem_index: Array | None = None,
    max_per_problem: int | None = None,
    accept_reward: float = 1.0,
) -> Array:
    """Which sampled responses to imitate: rewards ``[B]`` -> bool ``[B]``.

    A response is accepted when its reward equals ``accept_reward``. With ``max_per_problem`` (and
    ``problem_index [B]`` int, the problem each response answers) only the first ``max_per_problem``
    accepted responses of each problem, in batch order, are kept.
    """
    if rewards.ndim != 1:
        raise ValueError(f"rewards: expected [B], got shape {rewards.shape}")
    accepted = rewards == accept_reward
    if max_per_problem is None:
        return accepted
    if problem_index is None or problem_index.shape != rewards.shape or max_per_problem < 1:
        raise ValueError(
            "max_per_problem: expected a positive int with problem_index of shape "
            f"{rewards.shape}, got {max_per_problem!r} and {None if problem_index is None else problem_index.shape}"
        )
    b = rewards.shape[0]
    same = problem_index[:, None] == problem_index[None, :]
    earlier = jnp.arange(b)[None, :] < jnp.arange(b)[:, None]  # [i, j]: j comes before i
    rank = (same & earlier & accepted[None, :]).sum(axis=1)  # accepted responses to i's problem before i
    return accepted & (rank < max_per_problem)


def _imitated_length(prompt_length: Array, length: Array, accepted: Array) -> Array:
    """Lengths with rejected responses cut to their prompt, so that they have no response token to imitate."""
    if accepted.shape != length.shape:
        raise ValueError(f"accepted: expected bool of shape {length.shape}, got {accepted.shape}")
    return jnp.where(accepted, length, prompt_length)


def star_targets(
    tokens: Array, prompt_length: Array, length: Array, accepted: Array, written: Array | None = None
) -> tuple[Array, Array]:
    """SFT targets of the accepted responses.

    Args:
      tokens: ``[B, L]`` int32 (prompt + response, padded).
      prompt_length, length: ``[B]`` int32.
      accepted: ``[B]`` bool (:func:`accepted_mask`).
      written: ``[B, L]`` bool or None: tokens the env wrote, never imitated.
    Returns:
      ``targets [B, L-1]`` (the next token) and ``mask [B, L-1]``: True on the response targets of accepted
      responses only (the token weights of the imitation loss).
    """
    return response_targets(tokens, prompt_length, _imitated_length(prompt_length, length, accepted), written)


def star_loss(
    logits: Array, tokens: Array, prompt_length: Array, length: Array, accepted: Array, written: Array | None = None
) -> tuple[Array, dict]:
    """Mean response cross-entropy over the tokens of accepted responses (0 when none is accepted).

    Args:
      logits: ``[B, L, A]`` from a full forward of ``tokens [B, L]``.
      prompt_length, length: ``[B]`` int32.
      accepted: ``[B]`` bool.
      written: ``[B, L]`` bool or None: tokens the env wrote, never imitated.
    Returns:
      ``(loss, metrics)`` with ``loss``, ``token_accuracy`` (of the argmax on imitated tokens) and
      ``num_accepted``.
    """
    imitated = _imitated_length(prompt_length, length, accepted)
    loss, metrics = sft_loss(logits, tokens, prompt_length, imitated, written)
    return loss, {**metrics, "num_accepted": accepted.sum()}


def outcome_value_loss(values: Array, prompt_length: Array, length: Array, rewards: Array) -> tuple[Array, dict]:
    """Squared error of the value at every state of each response, from the last prompt token to the final
    state, to that response's final reward (an outcome reward model trained on the policy's own samples).

    Args:
      values: ``[B, L]`` value predictions of a full forward (position ``t`` = the state after token ``t``).
      prompt_length, length: ``[B]`` int32.
      rewards: ``[B]`` float, the verifier's reward of each response.
    Returns:
      ``(loss, {"value_loss": loss})``, the mean over all those states of the batch.
    """
    idx = jnp.arange(values.shape[1])[None]
    mask = (idx >= prompt_length[:, None] - 1) & (idx < length[:, None])
    err = (values.astype(jnp.float32) - rewards[:, None].astype(jnp.float32)) ** 2
    loss = (err * mask).sum() / jnp.maximum(mask.sum(), 1)
    return loss, {"value_loss": loss}
