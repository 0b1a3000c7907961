"""Expert iteration for reasoning (STaR / ReST-EM) in the training loop: sample, keep what the verifier
accepts, imitate it.

* ``collect``: ``rl.num_problems`` training problems (never held-out ones), ``rl.group_size`` responses each
  at ``rl.temperature``; the accepted ones (reward 1; at most ``star.max_per_problem`` per problem, 0 = all)
  are marked in the stored batch.
* ``update``: cross-entropy on the accepted responses' tokens (:func:`jaxrl_reason.algorithms.star.star_loss`),
  ``rl.updates_per_batch`` steps per batch. With ``star.value_weight > 0`` the value head also regresses, on
  every sampled response, to its reward (:func:`jaxrl_reason.algorithms.star.outcome_value_loss`). A batch with
  no accepted response (and no value loss) leaves the params unchanged.

With ``rl.max_lag = k >= 1`` the responses are sampled (or searched) with the params of ``k`` collections
earlier (:mod:`jaxrl_reason.training.lag`); imitating verified responses needs no importance correction.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason.algorithms.star import accepted_mask, outcome_value_loss, star_loss
from jaxrl_reason.envs.core import tree_select
from jaxrl_reason.training import lag
from jaxrl_reason.training.policy_gradient import sample_groups


def buffer(config, spec, *, writes_tokens: bool = False) -> dict:
    """Zeros of the stored batch: ``num_problems * group_size`` responses and which are accepted (and, when the
    env writes tokens, ``written [B, L]``: the tokens it wrote, never imitated)."""
    b = config.rl.num_problems * config.rl.group_size
    out = {
        "tokens": jnp.zeros((b, spec.max_length), jnp.int32),
        "prompt_length": jnp.ones((b,), jnp.int32),
        "length": jnp.ones((b,), jnp.int32),
        "accepted": jnp.zeros((b,), bool),
    }
    if config.star.value_weight > 0:  # only then, so runs without it keep their checkpoint layout
        out["reward"] = jnp.zeros((b,), jnp.float32)
    if writes_tokens:  # likewise: only envs that write tokens (tool use)
        out["written"] = jnp.zeros((b, spec.max_length), bool)
    return out


def sampled_responses(ctx, state) -> tuple[jnp.ndarray, ...]:
    """``(final states [B], reward [B])`` of ``rl.group_size`` responses sampled at ``rl.temperature`` to each of
    ``rl.num_problems`` training problems (the GRPO sampling step)."""
    traj = sample_groups(ctx, state, ctx.config.rl.num_problems)
    return traj.final_state, traj.returns[:, 0]


def build(ctx, responses=sampled_responses, *, keep_all: bool = False):
    """``(collect, update)`` of expert iteration (see the module docstring). `responses(ctx, state)` makes the
    batch, ``(final states, rewards)`` (rows ``i*G .. i*G+G-1`` answer problem ``i``); ``keep_all`` imitates every
    response, not only the verified ones (training/step_search.py)."""
    config, model, env = ctx.config, ctx.model, ctx.env
    rl = config.rl
    n, g = rl.num_problems, rl.group_size
    cap = int(config.star.max_per_problem) or None
    value_weight = float(config.star.value_weight)

    def collect(state):
        behaviour, state, lag_metrics = lag.behaviour_params(state, ctx.start)
        final, rewards = responses(ctx, state.replace(params=behaviour))
        tokens, prompt_length, length = final.tokens, final.prompt_length, final.length
        accepted = accepted_mask(rewards, problem_index=jnp.arange(n * g) // g, max_per_problem=cap)
        batch = {
            "tokens": tokens,
            "prompt_length": prompt_length.astype(jnp.int32),
            "length": length.astype(jnp.int32),
            "accepted": jnp.ones_like(accepted) if keep_all else accepted,
        }
        if value_weight > 0:
            batch["reward"] = rewards.astype(jnp.float32)
        if env.writes_tokens:
            batch["written"] = jax.vmap(env.written_mask)(final)
        solved = (rewards == 1.0).reshape(n, g).any(1)
        metrics = {
            "rl_accuracy": (rewards == 1.0).mean(),
            "rl_response_length": (length - prompt_length).mean(),
            "star_accepted": batch["accepted"].mean(),
            "star_solved_problems": solved.mean(),
            **lag_metrics,
        }
        return state.replace(buffer=batch), metrics

    def update(state):
        batch = state.buffer

        def loss_fn(params):
            logits, values = model.apply(params, batch["tokens"])
            b = batch
            loss, metrics = star_loss(
                logits, b["tokens"], b["prompt_length"], b["length"], b["accepted"], b.get("written")
            )
            if value_weight > 0:
                v_loss, v_metrics = outcome_value_loss(values, batch["prompt_length"], batch["length"], batch["reward"])
                loss, metrics = (
                    loss + value_weight * v_loss,
                    {**metrics, **v_metrics, "loss": loss + value_weight * v_loss},
                )
            return loss, metrics

        new, metrics = ctx.apply_grads(state, loss_fn)
        if value_weight > 0:  # the value head learns from every batch
            return new, metrics
        # nothing accepted: no step at all (AdamW's momentum and weight decay would still move the params)
        skipped = state.replace(step=state.step + 1)
        return tree_select(batch["accepted"].any(), new, skipped), metrics

    return collect, update
