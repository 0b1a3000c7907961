"""Supervised fine-tuning (imitation warm start) on worked solutions.

Cross-entropy of the policy head on the response tokens of demonstrations (``reasoning <ans> answer
<eos>``), given the prompt. Prompt tokens are context only. A model that never earns a reward
cannot learn from RL, so reasoning tasks start here. Tokens the environment writes (a tool's answer,
``written``) are context only too: the policy never trains on them.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax

from jaxrl_reason.algorithms.common import masked_mean, policy_mask
from jaxrl_reason.types import Array


def response_targets(
    tokens: Array, prompt_length: Array, length: Array, written: Array | None = None
) -> tuple[Array, Array]:
    """Next-token targets of a batch of episodes.

    Args:
      tokens: [B, L] int32 (prompt + response, padded).
      prompt_length, length: [B] int32.
      written: [B, L] bool or None: tokens the env wrote (``TokenEnv.written_mask``); never targets.
    Returns:
      ``targets [B, L-1]`` (the token after each position) and ``mask [B, L-1]``: True where the
      target is a response token (positions ``prompt_length - 1 .. length - 2``) not written by the env.
    """
    pos = jnp.arange(tokens.shape[1] - 1)[None, :]
    mask = (pos + 1 >= prompt_length[:, None]) & (pos + 1 < length[:, None])
    return tokens[:, 1:], policy_mask(mask, None if written is None else written[:, 1:])


def sft_loss(
    logits: Array, tokens: Array, prompt_length: Array, length: Array, written: Array | None = None
) -> tuple[Array, dict]:
    """Mean token cross-entropy of the response. ``logits [B, L, A]`` from a full forward of `tokens`;
    ``written [B, L]`` (or None): env-written tokens, left out (:func:`response_targets`).

    Returns ``(loss, metrics)``; metrics hold the token accuracy of the argmax prediction.
    """
    targets, mask = response_targets(tokens, prompt_length, length, written)
    logits = logits[:, :-1].astype(jnp.float32)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
    loss = masked_mean(ce, mask)
    acc = masked_mean((logits.argmax(-1) == targets).astype(jnp.float32), mask)
    return loss, {"loss": loss, "token_accuracy": acc}
