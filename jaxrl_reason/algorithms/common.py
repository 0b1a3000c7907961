"""Pieces shared by the losses: gathering per-step predictions from a full forward."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.types import Array


def step_positions(prompt_length: Array, num_steps: int) -> Array:
    """[B, T] int32: the token position whose prediction chooses step t (``prompt_length + t - 1``)."""
    return prompt_length[:, None] + jnp.arange(num_steps, dtype=jnp.int32)[None, :] - 1


def gather_steps(x: Array, positions: Array) -> Array:
    """``x [B, L, ...]`` at ``positions [B, T]`` -> ``[B, T, ...]`` (positions clipped into range)."""
    positions = jnp.clip(positions, 0, x.shape[1] - 1)
    idx = positions.reshape(positions.shape + (1,) * (x.ndim - 2))
    return jnp.take_along_axis(x, idx, axis=1)


def policy_mask(valid: Array, env_written: Array | None) -> Array:
    """The steps (or targets) a policy loss, KL or entropy term counts: `valid` without the env-written ones
    (a tool's answer is forced, not chosen, so the policy never trains on it). ``env_written`` None: none are."""
    return valid if env_written is None else valid & ~env_written


def masked_mean(x: Array, mask: Array) -> Array:
    """Mean of `x` over entries where `mask` is True (0 when none are)."""
    mask = mask.astype(x.dtype)
    return (x * mask).sum() / jnp.maximum(mask.sum(), 1.0)


#: Parameters of the policy-value transformer's value head (see jaxrl_reason.models.transformer).
VALUE_HEAD_PARAMS = ("value_head", "value_bias")


def value_head_only(params: dict) -> dict:
    """`params` with gradients stopped everywhere but the value head.

    Use inside a loss to train the value head alone: the trunk and policy head get zero gradients,
    so (with no weight decay) they stay bit-identical.
    """
    frozen = jax.tree.map(jax.lax.stop_gradient, params)
    return {**frozen, **{name: params[name] for name in VALUE_HEAD_PARAMS}}
