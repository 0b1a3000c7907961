"""GRPO and RLOO: policy gradients with verifiable rewards, group baselines and PPO-style clipping.

One iteration samples ``G`` responses for each of ``num_problems`` problems with :func:`jr.rollout`
under the current params (the behaviour policy), scores them with the env's verifier, and turns the
rewards of each group into advantages:

* GRPO (group-normalized): ``A_i = (r_i - mean_g r) / (std_g r + eps)`` (population std);
* RLOO (leave-one-out): ``A_i = r_i - mean_{j != i} r_j = G/(G-1) * (r_i - mean_g r)``;
* Dr. GRPO (no std scaling): ``A_i = r_i - mean_g r``.

Every response token of sample ``i`` gets ``A_i``. The loss is the clipped surrogate of PPO against the
behaviour log-probs, averaged over all valid response tokens of the batch (token-level averaging)::

    ratio = exp(log pi_theta(a_t) - log pi_old(a_t))
    L = -mean_t min(ratio * A, clip(ratio, 1 - clip_eps, 1 + clip_eps) * A) + kl_coef * mean_t k3

with the ``k3`` estimator of ``KL(pi_theta || pi_ref)``: ``exp(lr) - lr - 1``, ``lr = log pi_ref - log pi_theta``
(unbiased, always >= 0), against a frozen reference policy (the params when RL starts).

Off-policy correction (decoupled PPO, as in AReaL and prime-rl) when the responses were sampled by a stale
behaviour policy ``mu`` (a lagged actor): the clip is taken against the learner's params at collection
(the *proximal* policy ``pi_prox``) and each token's terms are weighted by a truncated importance weight::

    w_t = min(pi_prox(a_t) / mu(a_t), is_cap)                       (a constant: no gradient)
    L = -mean_t w_t min(r_t A, clip(r_t, 1 - eps, 1 + eps) A) + kl_coef * mean_t w_t k3,
    r_t = pi_theta(a_t) / pi_prox(a_t)

(:func:`truncated_importance_weights`; ``policy_gradient_loss(..., behaviour_log_p=...)``).

Options (keyword arguments; the defaults are the behaviour above):

* DAPO: asymmetric clip-higher (``clip_eps_low``, ``clip_eps_high``), and dynamic sampling
  (:func:`informative_groups`, :func:`select_informative_groups`, :func:`group_rows`);
* loss aggregation ``loss_agg``: ``"token"`` (default), ``"sequence"`` (per-response mean, then mean over
  responses; the original GRPO) or ``"constant"`` (token sum / (B * max_tokens); Dr. GRPO);
* dense process rewards: :func:`process_advantages` (return-to-go of step rewards, optionally normalised per
  group or per group and step index, as the process-supervision variant of GRPO in DeepSeekMath).

All functions are pure; the training loop (:mod:`jaxrl_reason.rlvr`) jits them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.algorithms.common import gather_steps, masked_mean, policy_mask, step_positions
from jaxrl_reason.types import Array

ESTIMATORS = ("grpo", "rloo", "dr_grpo")
LOSS_AGGREGATIONS = ("token", "sequence", "constant")
STEP_NORMALIZATIONS = ("none", "group", "position")


def _check_groups(rewards: Array) -> None:
    if rewards.ndim != 2:
        raise ValueError(f"rewards: expected [num_problems, group_size], got shape {rewards.shape}")


def group_advantages(rewards: Array, *, estimator: str = "grpo", eps: float = 1e-6) -> Array:
    """Per-sample advantages from rewards ``[N, G]`` (N problems, G samples each) -> ``[N, G]``.

    GRPO: ``(r - mean) / (std + eps)``; RLOO: ``r_i - mean_{j != i} r_j`` (needs ``G >= 2``);
    Dr. GRPO: ``r - mean`` (no std scaling, so groups with rare successes are not up-weighted). A group
    whose rewards are all equal gets zero advantage under all three.
    """
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {estimator!r}")
    _check_groups(rewards)
    g = rewards.shape[1]
    rewards = rewards.astype(jnp.float32)
    mean = rewards.mean(axis=1, keepdims=True)
    if estimator == "grpo":
        std = rewards.std(axis=1, keepdims=True)
        return (rewards - mean) / (std + eps)
    if estimator == "dr_grpo":
        return rewards - mean
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


def aggregate_loss(x: Array, valid: Array, *, loss_agg: str = "token", max_tokens: int | None = None) -> Array:
    """Reduce per-token terms ``x [B, T]`` over the valid tokens ``valid [B, T]`` to a scalar.

    * ``"token"``: ``sum_{b,t} x / #valid`` (every valid token of the batch weighs the same; DAPO);
    * ``"sequence"``: ``mean_b (sum_t x_b / #valid_b)`` over responses with a valid token (original GRPO);
    * ``"constant"``: ``sum_{b,t} x / (B * max_tokens)`` (Dr. GRPO: no length normalisation; ``max_tokens``
      defaults to ``T``, the padded response length).

    All give 0 when no token is valid.
    """
    if loss_agg not in LOSS_AGGREGATIONS:
        raise ValueError(f"loss_agg must be one of {LOSS_AGGREGATIONS}, got {loss_agg!r}")
    if max_tokens is not None and (loss_agg != "constant" or max_tokens < 1):
        raise ValueError(f"max_tokens: expected a positive int with loss_agg='constant', got {max_tokens!r}")
    if loss_agg == "token":
        return masked_mean(x, valid)
    mask = valid.astype(x.dtype)
    if loss_agg == "constant":
        return (x * mask).sum() / (x.shape[0] * (max_tokens or x.shape[1]))
    per_seq = (x * mask).sum(axis=1) / jnp.maximum(mask.sum(axis=1), 1.0)
    return masked_mean(per_seq, valid.any(axis=1))


def truncated_importance_weights(prox_log_p: Array, behaviour_log_p: Array, *, is_cap: float) -> Array:
    """``w = min(exp(prox_log_p - behaviour_log_p), is_cap)`` per token, a constant (stop-gradient): the truncated
    importance weight of a token sampled by the behaviour policy ``mu`` for an objective under ``pi_prox``
    (``[B, T]`` -> ``[B, T]``). Truncation at ``is_cap > 0`` bounds the variance (at the price of a bias
    where ``pi_prox / mu > is_cap``)."""
    if not is_cap > 0:
        raise ValueError(f"is_cap: expected a positive truncation level, got {is_cap!r}")
    log_w = jax.lax.stop_gradient(prox_log_p.astype(jnp.float32) - behaviour_log_p.astype(jnp.float32))
    return jnp.minimum(jnp.exp(log_w), is_cap)


def _clip_range(clip_eps: float, clip_eps_low: float | None, clip_eps_high: float | None) -> tuple[float, float]:
    low = clip_eps if clip_eps_low is None else clip_eps_low
    high = clip_eps if clip_eps_high is None else clip_eps_high
    if not (0.0 <= low < 1.0 and high >= 0.0):
        raise ValueError(f"clip range: expected 0 <= clip_eps_low < 1 and clip_eps_high >= 0, got {low}, {high}")
    return low, high


def policy_gradient_loss(
    log_p: Array,
    old_log_p: Array,
    advantages: Array,
    valid: Array,
    *,
    clip_eps: float = 0.2,
    clip_eps_low: float | None = None,
    clip_eps_high: float | None = None,
    loss_agg: str = "token",
    max_tokens: int | None = None,
    ref_log_p: Array | None = None,
    kl_coef: float = 0.0,
    env_written: Array | None = None,
    behaviour_log_p: Array | None = None,
    is_cap: float = 2.0,
) -> tuple[Array, dict]:
    """The clipped surrogate (+ optional k3 KL), aggregated over valid steps (token-averaged by default).

    Args:
      log_p: ``[B, T]`` log-probs of the taken actions under the params being trained.
      old_log_p: ``[B, T]`` the behaviour policy's (constants).
      advantages: ``[B]`` per sample (broadcast over its tokens) or ``[B, T]``.
      valid: ``[B, T]`` bool: response tokens that count.
      clip_eps: PPO clip range, symmetric: ``clip(ratio, 1 - clip_eps, 1 + clip_eps)``.
      clip_eps_low, clip_eps_high: DAPO clip-higher, ``clip(ratio, 1 - low, 1 + high)``; each defaults to
        ``clip_eps`` (DAPO uses 0.2 and 0.28).
      loss_agg, max_tokens: how per-token terms (surrogate and KL) become a scalar; see :func:`aggregate_loss`.
      ref_log_p: ``[B, T]`` the reference policy's log-probs (None: no KL term).
      kl_coef: weight of the KL term.
      env_written: ``[B, T]`` bool or None: steps whose token the env wrote; they count nowhere (surrogate, KL,
        metrics, and the token counts that average them).
      behaviour_log_p: ``[B, T]`` or None: the log-probs of the policy that sampled the tokens when it is not
        ``old_log_p``'s (decoupled PPO, module docstring): ``old_log_p`` is then the proximal policy's, and the
        surrogate and KL terms of each token are weighted by :func:`truncated_importance_weights`.
      is_cap: the truncation of those weights (with `behaviour_log_p` only).
    Returns:
      ``(loss, metrics)`` with ``pg_loss``, ``kl``, ``clip_fraction``, ``ratio`` (the last two token-averaged);
      with `behaviour_log_p` also ``is_weight`` (the mean weight) and ``is_truncated`` (the fraction of tokens
      whose weight was capped), over the valid tokens.
    """
    low, high = _clip_range(clip_eps, clip_eps_low, clip_eps_high)
    valid = policy_mask(valid, env_written)
    agg = lambda x: aggregate_loss(x, valid, loss_agg=loss_agg, max_tokens=max_tokens)
    adv = advantages if advantages.ndim == 2 else advantages[:, None]
    adv = jnp.broadcast_to(adv, log_p.shape).astype(jnp.float32)
    ratio = jnp.exp(log_p - jax.lax.stop_gradient(old_log_p))
    clipped = jnp.clip(ratio, 1.0 - low, 1.0 + high)
    surrogate = jnp.minimum(ratio * adv, clipped * adv)
    weigh = lambda x: x  # on-policy batches: no weights at all (not even a multiply by 1)
    metrics = {}
    if behaviour_log_p is not None:
        weight = truncated_importance_weights(old_log_p, behaviour_log_p, is_cap=is_cap)
        weigh = lambda x: weight * x
        capped = (old_log_p.astype(jnp.float32) - behaviour_log_p.astype(jnp.float32) > jnp.log(is_cap)) * 1.0
        metrics = {"is_weight": masked_mean(weight, valid), "is_truncated": masked_mean(capped, valid)}
    pg_loss = -agg(weigh(surrogate))
    dev = ratio - 1.0
    outside = (dev > high) | (-dev > low)  # = |ratio - 1| > clip_eps when symmetric
    metrics |= {
        "pg_loss": pg_loss,
        "clip_fraction": masked_mean(outside.astype(jnp.float32), valid),
        "ratio": masked_mean(ratio, valid),
    }
    loss = pg_loss
    if ref_log_p is not None:
        kl = agg(weigh(k3_kl(log_p, jax.lax.stop_gradient(ref_log_p))))
        loss = loss + kl_coef * kl
        metrics["kl"] = kl
    metrics["loss"] = loss
    return loss, metrics


# --- DAPO dynamic sampling -------------------------------------------------------------------------------


def informative_groups(rewards: Array) -> Array:
    """Rewards ``[N, G]`` -> bool ``[N]``: groups whose rewards are not all equal.

    Only these have a nonzero advantage under every estimator, so only they teach anything.
    """
    _check_groups(rewards)
    return (rewards != rewards[:, :1]).any(axis=1)


def select_informative_groups(rewards: Array, num_keep: int) -> tuple[Array, Array]:
    """Pick a fixed-size batch of groups from an oversampled candidate set (DAPO dynamic sampling, static shapes).

    Args:
      rewards: ``[M, G]`` rewards of ``M`` candidate groups.
      num_keep: ``K <= M`` groups to keep.
    Returns:
      ``indices [K]`` int32: the informative groups first, then (to fill up, when fewer than ``K`` are
      informative) the uninformative ones, each part in candidate order (deterministic); and
      ``num_informative`` (int32 scalar): how many of the ``M`` candidates are informative, so kept group
      ``k`` is informative iff ``k < num_informative``.
    """
    _check_groups(rewards)
    if not 1 <= num_keep <= rewards.shape[0]:
        raise ValueError(f"num_keep: expected 1 <= num_keep <= {rewards.shape[0]} candidate groups, got {num_keep}")
    informative = informative_groups(rewards)
    order = jnp.argsort(jnp.logical_not(informative).astype(jnp.int32), stable=True)
    return order[:num_keep].astype(jnp.int32), informative.sum().astype(jnp.int32)


def group_rows(indices: Array, group_size: int) -> Array:
    """Group indices ``[K]`` -> their rows ``[K * G]`` int, in a flat batch whose row ``i * G + j`` is sample ``j``
    of group ``i`` (as :mod:`jaxrl_reason.rlvr` lays out a batch)."""
    return (indices[:, None] * group_size + jnp.arange(group_size, dtype=indices.dtype)[None, :]).reshape(-1)


# --- dense process rewards -------------------------------------------------------------------------------


def _normalize_steps(r: Array, is_step: Array, group_size: int, normalize: str, eps: float) -> Array:
    """Step rewards ``[B, T]`` standardised over the steps of each group (or of each group and step index)."""
    b, t = r.shape
    seg = jnp.broadcast_to(jnp.arange(b)[:, None] // group_size, (b, t))
    num = b // group_size
    if normalize == "position":
        ordinal = jnp.clip(jnp.cumsum(is_step, axis=1) - 1, 0, t - 1)  # the k-th step of its response
        seg, num = seg * t + ordinal, num * t
    w = is_step.astype(jnp.float32)
    total = lambda x: jax.ops.segment_sum(x.reshape(-1), seg.reshape(-1), num_segments=num)[seg]
    count = jnp.maximum(total(w), 1.0)
    mean = total(r * w) / count
    std = jnp.sqrt(total(w * (r - mean) ** 2) / count)
    return (r - mean) / (std + eps)


def process_advantages(
    step_rewards: Array,
    step_end: Array,
    valid: Array,
    *,
    group_size: int = 1,
    normalize: str = "none",
    outcome: Array | None = None,
    eps: float = 1e-6,
) -> Array:
    """Per-token advantages from dense per-step rewards (e.g. a PRM or an exact step checker).

    ``A[b, t] = sum_{s >= t, s a step end} r~[b, s] + outcome[b]`` on valid tokens (0 elsewhere): each token is
    credited with the (normalised) rewards of the steps that end at or after it (return-to-go, no discount).

    Args:
      step_rewards: ``[B, T]`` float: the reward of each step at its step-end token (other entries ignored).
      step_end: ``[B, T]`` bool: the tokens that end a step (only valid ones count).
      valid: ``[B, T]`` bool: response tokens.
      group_size: ``G``; rows ``i*G .. i*G+G-1`` are the samples of problem ``i`` (``B % G == 0``).
      normalize: ``"none"`` (``r~ = r``); ``"group"``: ``r~ = (r - mean) / (std + eps)`` over all step rewards of
        the group (DeepSeekMath's process supervision); ``"position"``: the same over the ``k``-th steps of the
        group's responses, for each ``k`` (population std; a lone step gets 0).
      outcome: ``[B]`` or None: a per-response term added to every valid token: raw final rewards for a plain
        return-to-go, or :func:`group_advantages` of them (flattened) to mix in the outcome advantage.
      eps: added to the std.
    Returns:
      ``[B, T]`` float32.
    """
    if normalize not in STEP_NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {STEP_NORMALIZATIONS}, got {normalize!r}")
    if step_rewards.ndim != 2 or step_end.shape != step_rewards.shape or valid.shape != step_rewards.shape:
        raise ValueError(
            f"step_rewards, step_end, valid: expected equal [B, T] shapes, got "
            f"{step_rewards.shape}, {step_end.shape}, {valid.shape}"
        )
    if group_size < 1 or step_rewards.shape[0] % group_size:
        raise ValueError(f"group_size: expected a divisor of the batch size {step_rewards.shape[0]}, got {group_size}")
    if outcome is not None and outcome.shape != step_rewards.shape[:1]:
        raise ValueError(f"outcome: expected shape {step_rewards.shape[:1]}, got {outcome.shape}")
    is_step = step_end & valid
    r = step_rewards.astype(jnp.float32)
    if normalize != "none":
        r = _normalize_steps(r, is_step, group_size, normalize, eps)
    r = jnp.where(is_step, r, 0.0)
    adv = jnp.flip(jnp.cumsum(jnp.flip(r, axis=1), axis=1), axis=1)
    if outcome is not None:
        adv = adv + outcome.astype(jnp.float32)[:, None]
    return jnp.where(valid, adv, 0.0)
