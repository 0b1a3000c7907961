"""Distillation losses: a student learns from a teacher run's samples (sequence level) or its logits (token level).

The training loop builds the data (:func:`jaxrl_reason.training.imitation.distillation_set`: the teacher
samples responses to the run's SFT problems once, deterministically from the run's seed) and the SFT
phase trains on them:

* ``mode="sequence"``: cross-entropy on the teacher's sampled responses (``keep="correct"`` keeps only
  those the verifier accepts — rejection-sampling distillation; ``"all"`` keeps every sample);
* ``mode="logits"``: per-token ``KL(teacher || student)`` over the full teacher distribution at every
  response position of the teacher's samples (``keep`` filters the same way).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.algorithms.common import masked_mean
from jaxrl_reason.algorithms.sft import response_targets
from jaxrl_reason.types import Array


def distill_loss(logits: Array, batch: dict) -> tuple[Array, dict]:
    """Token-level ``KL(teacher || student)`` averaged over response positions.

    Args:
      logits: ``[B, L, A]`` the student's full forward of ``batch["tokens"]``.
      batch: ``tokens [B, L]``, ``prompt_length [B]``, ``length [B]`` and ``teacher_log_probs [B, L-1, A]``
        (the teacher's log-softmax at positions ``0 .. L-2``, i.e. predicting tokens ``1 .. L-1``); optionally
        ``written [B, L]`` bool, the tokens the env wrote, which are not distilled.
    Returns:
      ``(loss, metrics)``; metrics hold ``token_accuracy`` (student argmax == sampled token).
    """
    targets, mask = response_targets(batch["tokens"], batch["prompt_length"], batch["length"], batch.get("written"))
    log_q = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    log_p = batch["teacher_log_probs"].astype(jnp.float32)
    p = jnp.exp(log_p)
    kl = (p * (jnp.where(p > 0, log_p, 0.0) - jnp.where(p > 0, log_q, 0.0))).sum(-1)
    loss = masked_mean(kl, mask)
    acc = masked_mean((log_q.argmax(-1) == targets).astype(jnp.float32), mask)
    return loss, {"loss": loss, "token_accuracy": acc}
