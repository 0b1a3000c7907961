"""GRPO / RLOO in the training loop: sample groups of responses, then clipped policy-gradient updates.

The loop (:mod:`jaxrl_reason.training.loop`) calls ``collect`` every ``rl.updates_per_batch`` steps and
``update`` every step (:mod:`jaxrl_reason.training.algorithm`):

* ``collect(state)``: ``rl.num_problems`` fresh problems (keys ``fold_in(key, step)``), ``rl.group_size``
  responses each from :func:`jr.rollout` at ``rl.temperature``; rewards -> group advantages; the batch
  (tokens, actions, behaviour log-probs, advantages) is stored in ``state.buffer`` so a checkpoint
  taken between updates resumes bit for bit. At the first RL step it also freezes the reference
  policy (``state.ref_params`` = the params at the start of RL) when ``rl.kl_coef > 0``.
* ``update(state)``: one clipped policy-gradient step on the stored batch
  (:func:`jaxrl_reason.algorithms.grpo.policy_gradient_loss`).

With ``rl.max_lag = k >= 1`` the responses are sampled with the params of ``k`` collections earlier
(:mod:`jaxrl_reason.training.lag`) and corrected as decoupled PPO: ``collect`` also stores the log-probs of the
sampled tokens under the current params (``prox_log_probs``, one full forward), the clip is taken against them,
and every token is weighted by ``min(pi_prox / pi_behaviour, rl.is_cap)``
(:func:`jaxrl_reason.algorithms.grpo.truncated_importance_weights`).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.algorithms.common import policy_mask
from jaxrl_reason.algorithms.grpo import (
    group_advantages,
    group_rows,
    policy_gradient_loss,
    select_informative_groups,
    token_log_probs,
)
from jaxrl_reason.envs.core import tree_select
from jaxrl_reason.models import rollout
from jaxrl_reason.training import lag, process_reward


def buffer(config, spec, *, writes_tokens: bool = False) -> dict:
    """Zeros of the stored RL batch: ``B = num_problems * group_size`` rows. Its ``valid`` marks the steps the
    loss counts: live ones the policy chose, not those the env wrote (so `writes_tokens` adds no key)."""
    del writes_tokens
    b, t = config.rl.num_problems * config.rl.group_size, spec.max_response_length
    out = {
        "tokens": jnp.zeros((b, spec.max_length), jnp.int32),
        "prompt_length": jnp.ones((b,), jnp.int32),
        "actions": jnp.zeros((b, t), jnp.int32),
        "valid": jnp.zeros((b, t), bool),
        "log_probs": jnp.zeros((b, t), jnp.float32),
        "advantages": jnp.zeros((b, t) if uses_process_reward(config) else (b,), jnp.float32),
    }
    if config.rl.max_lag > 0:  # only then, so lock-step runs keep their checkpoint layout
        out["prox_log_probs"] = jnp.zeros((b, t), jnp.float32)
    return out


def uses_process_reward(config) -> bool:
    """Dense per-step rewards from the task's step checker (the advantages are then per token)."""
    return config.rl.process_reward == "steps"


def uses_reference(config) -> bool:
    return config.rl.kl_coef > 0


def group_states(ctx, state, num_groups: int):
    """``(states, key)``: `num_groups` fresh training problems, each repeated ``rl.group_size`` times (rows
    ``i*G .. i*G+G-1`` are problem ``i``; keys ``fold_in(fold_in(key, step), 1)``), and the key to answer them."""
    key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 1)
    k_init, k_answer = jax.random.split(key)
    states = jax.vmap(ctx.init)(jax.random.split(k_init, num_groups))
    return jax.tree.map(lambda x: jnp.repeat(x, ctx.config.rl.group_size, axis=0), states), k_answer


def tool_metrics(env, final_states) -> dict:
    """Tool calls and failed calls per response (``rl_tool_calls``, ``rl_tool_errors``); {} without tools."""
    if not hasattr(env, "tool_stats"):
        return {}
    rows = final_states.length.shape[0]
    return {f"rl_{k}": v.astype(jnp.float32) / rows for k, v in env.tool_stats(final_states).items()}


def sample_groups(ctx, state, num_groups: int, params=None):
    """``rl.group_size`` responses at ``rl.temperature`` to each of `num_groups` fresh training problems
    (:func:`group_states`) from `params` (default ``state.params``): a Trajectory whose rows ``i*G .. i*G+G-1``
    answer problem ``i``."""
    states, k_roll = group_states(ctx, state, num_groups)
    params = state.params if params is None else params
    temperature = ctx.config.rl.temperature
    return rollout(ctx.model, params, ctx.env, states, k_roll, temperature=temperature, masked_log_probs=False)


def build(ctx):
    """``(collect, update)`` pure functions of a TrainState (the loop jits them)."""
    config, model, apply_grads, rl_from = ctx.config, ctx.model, ctx.apply_grads, ctx.start
    rl = config.rl
    n, g = rl.num_problems, rl.group_size
    kl = uses_reference(config)
    lagged = rl.max_lag > 0
    dense = uses_process_reward(config)
    if dense:
        process_reward.check_usable(ctx.env)

    m = n * rl.oversample  # DAPO dynamic sampling: m candidate groups, the n informative ones kept
    estimator = "dr_grpo" if config.algorithm == "grpo" and not rl.scale_by_std else config.algorithm

    def sample(state):
        behaviour, state, metrics = lag.behaviour_params(state, rl_from)
        traj = sample_groups(ctx, state, m, behaviour)
        rewards = traj.returns[:, 0].reshape(m, g)
        if m > n:
            keep, informative = select_informative_groups(rewards, n)
            traj = jax.tree.map(lambda x: x[group_rows(keep, g)] if getattr(x, "ndim", 0) else x, traj)
            rewards = rewards[keep]
        adv = group_advantages(rewards, estimator=estimator, eps=rl.adv_eps).reshape(-1)
        if dense:
            step_r, step_end = process_reward.step_rewards(ctx.env, traj)
            adv = process_reward.token_advantages(rl, adv, step_r, step_end, traj.valid, g)
            metrics["rl_step_accuracy"] = jnp.where(step_end, step_r, 0.0).sum() / jnp.maximum(step_end.sum(), 1)
        batch = {
            "tokens": traj.tokens,
            "prompt_length": traj.prompt_length.astype(jnp.int32),
            "actions": traj.actions,
            "valid": policy_mask(traj.valid, traj.env_written),
            "log_probs": traj.log_probs.astype(jnp.float32),
            "advantages": adv,
        }
        if lagged:  # the learner's ("proximal") log-probs of the sampled tokens: the clip's anchor
            logits, _ = model.apply(state.params, batch["tokens"])
            batch["prox_log_probs"] = token_log_probs(logits, batch["prompt_length"], batch["actions"])
        ref = state.ref_params
        if kl:
            ref = tree_select(state.step == rl_from, state.params, state.ref_params)
        metrics |= {
            "rl_reward": rewards.mean(),
            "rl_accuracy": (rewards == 1.0).mean(),
            "rl_response_length": traj.valid.sum(1).mean(),
            "rl_zero_std_groups": (rewards.std(1) == 0).mean(),
        }
        if m > n:
            metrics["rl_informative_candidates"] = informative.astype(jnp.float32) / m
        metrics |= tool_metrics(ctx.env, traj.final_state)
        return state.replace(buffer=batch, ref_params=ref), metrics

    def update(state):
        batch = state.buffer

        def loss_fn(params):
            logits, _ = model.apply(params, batch["tokens"])
            log_p = token_log_probs(logits, batch["prompt_length"], batch["actions"])
            ref_log_p = None
            if kl:
                ref_logits, _ = model.apply(state.ref_params, batch["tokens"])
                ref_log_p = token_log_probs(ref_logits, batch["prompt_length"], batch["actions"])
            return policy_gradient_loss(
                log_p,
                batch["prox_log_probs"] if lagged else batch["log_probs"],
                batch["advantages"],
                batch["valid"],
                clip_eps=rl.clip_eps,
                clip_eps_high=rl.clip_eps_high if rl.clip_eps_high >= 0 else None,
                loss_agg=rl.loss_agg,
                ref_log_p=ref_log_p,
                kl_coef=rl.kl_coef,
                behaviour_log_p=batch["log_probs"] if lagged else None,
                is_cap=rl.is_cap,
            )

        return apply_grads(state, loss_fn)

    return sample, update
