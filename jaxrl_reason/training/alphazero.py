"""AlphaZero expert iteration in the training loop: self-play with MCTS into a replay, then updates from it.

* ``collect``: ``selfplay.num_episodes`` fresh episodes (keys ``fold_in(key, step)``), a search at every
  token (:func:`jaxrl_reason.search.selfplay`), each device playing its own episodes; they overwrite the
  oldest rows of the replay (``selfplay.replay_iterations`` iterations kept).
* ``update``: a batch of ``selfplay.batch_size`` episodes drawn from the replay; policy cross-entropy to
  the search policy π and value regression to the outcome (:func:`jaxrl_reason.algorithms.alphazero_loss`).
  During ``selfplay.value_warmup_steps`` only the value head learns (the trunk is frozen).

With ``rl.max_lag = k >= 1`` self-play runs with the params of ``k`` iterations earlier
(:mod:`jaxrl_reason.training.lag`); the search's policy and the outcome are targets of their own, so no
importance correction is needed (the replay mixes iterations anyway).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxrl_reason import parallel
from jaxrl_reason.algorithms.alphazero import alphazero_loss
from jaxrl_reason.algorithms.common import value_head_only
from jaxrl_reason.envs.core import tree_select
from jaxrl_reason.search import search_config_from, selfplay
from jaxrl_reason.training import lag
from jaxrl_reason.types import Trajectory


def capacity(config) -> int:
    return config.selfplay.replay_iterations * config.selfplay.num_episodes


def buffer(config, spec, *, writes_tokens: bool = False) -> dict:
    """Zeros of the replay: ``capacity`` episodes of tokens, actions, players, rewards and π per step (and,
    when the env writes tokens, ``env_written``: the steps left out of the policy loss)."""
    cap, steps = capacity(config), spec.max_response_length
    replay = {
        "tokens": jnp.zeros((cap, spec.max_length), jnp.int32),
        "prompt_length": jnp.ones((cap,), jnp.int32),
        "actions": jnp.zeros((cap, steps), jnp.int32),
        "players": jnp.zeros((cap, steps), jnp.int32),
        "valid": jnp.zeros((cap, steps), bool),
        "rewards": jnp.zeros((cap, steps, spec.num_players), jnp.float32),
        "policy": jnp.zeros((cap, steps, spec.num_actions), jnp.float32),
    }
    if config.selfplay.value_target_mix > 0:  # only then: older runs' checkpoints keep their layout
        replay["values"] = jnp.zeros((cap, steps), jnp.float32)
    if writes_tokens:  # likewise: only envs that write tokens (tool use) store which
        replay["env_written"] = jnp.zeros((cap, steps), bool)
    return replay


def build(ctx):
    """``(collect, update)`` of AlphaZero (see the module docstring)."""
    return _collect_fn(ctx), _update_fn(ctx)


def _collect_fn(ctx):
    config, env, model, mesh = ctx.config, ctx.env, ctx.model, ctx.mesh
    sp = config.selfplay
    search = search_config_from(config)

    def play_one(params, one_state, one_key):  # one episode, its own key: same result on any mesh
        traj = selfplay(
            model,
            params,
            env,
            jax.tree.map(lambda x: x[None], one_state),
            one_key,
            search=search,
            temperature=sp.temperature,
        )
        return jax.tree.map(lambda x: x[0], traj)

    def collect(state):
        behaviour, state, lag_metrics = lag.behaviour_params(state, ctx.start)
        key = jax.random.fold_in(state.key, state.step)
        k_init, k_play = jax.random.split(jax.random.fold_in(key, 1))
        states = jax.vmap(ctx.init)(jax.random.split(k_init, sp.num_episodes))
        traj = parallel.map_examples(play_one, mesh, behaviour, states, jax.random.split(k_play, sp.num_episodes))
        idx = (state.buffer_count + jnp.arange(sp.num_episodes)) % capacity(config)
        replay = {k: v.at[idx].set(getattr(traj, k).astype(v.dtype)) for k, v in state.buffer.items()}
        returns = traj.returns
        metrics = {"selfplay_return": returns[:, 0].mean(), "selfplay_length": traj.valid.sum(1).mean(), **lag_metrics}
        if env.spec.num_players == 2:
            metrics["selfplay_draw_rate"] = (returns[:, 0] == 0).mean()
        return state.replace(buffer=replay, buffer_count=state.buffer_count + sp.num_episodes), metrics

    return collect


def _update_fn(ctx):
    config, model, mesh = ctx.config, ctx.model, ctx.mesh
    sp = config.selfplay
    policy_from = ctx.start + sp.value_warmup_steps

    def update(state):
        key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 2)
        filled = jnp.minimum(state.buffer_count, capacity(config))
        idx = jax.random.randint(key, (sp.batch_size,), 0, jnp.maximum(filled, 1))
        batch = parallel.constrain_batch({k: v[idx] for k, v in state.buffer.items()}, mesh)
        zeros = jnp.zeros(batch["actions"].shape, jnp.float32)
        traj = Trajectory(log_probs=zeros, final_state=(), **{"values": zeros, **batch})
        warmup = state.step < policy_from

        def loss_fn(params):
            if sp.value_warmup_steps:  # warm-up: gradients reach the value head only, the trunk is frozen
                params = tree_select(warmup, value_head_only(params), params)
            logits, values, value_logits = model.apply(params, traj.tokens, return_value_logits=True)
            categorical = model.config.value_head == "categorical"
            return alphazero_loss(
                logits,
                values,
                traj,
                value_weight=sp.value_weight,
                policy_weight=1.0 - warmup.astype(jnp.float32),
                value_logits=value_logits if categorical else None,
                value_target_mix=sp.value_target_mix,
            )

        return ctx.apply_grads(state, loss_fn, trunk_frozen=warmup if sp.value_warmup_steps else None)

    return update
