"""The train state of a run (one pytree, saved whole) and the model and optimizer a config builds."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from jaxrl_reason import parallel
from jaxrl_reason.models import PolicyValueTransformer, param_labels
from jaxrl_reason.run.pretrained import model_config
from jaxrl_reason.training.algorithm import empty_buffer, get_algorithm
from jaxrl_reason.training.lag import init_actor


@struct.dataclass
class TrainState:
    """Everything a run needs to continue bit for bit. One pytree, saved whole by Orbax."""

    params: Any
    opt_state: Any
    step: jax.Array  # [] int32: optimizer updates done
    key: jax.Array  # base PRNG key; step s uses fold_in(key, s)
    buffer: dict  # the algorithm's stored experience (AlphaZero's replay, GRPO's batch), leading axis = rows
    buffer_count: jax.Array  # [] int32: rows ever inserted (AlphaZero's replay cursor)
    ref_params: Any = None  # GRPO/RLOO with rl.kl_coef > 0: the frozen reference policy (params at RL start)
    # rl.max_lag = k >= 1: the actor's params, {"params": k snapshots oldest first, "step": [k] int32}
    # (training/lag.py); None at k = 0, so lock-step runs keep their checkpoint layout
    actor: Any = None


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def is_reasoning_task(env) -> bool:
    return hasattr(env, "demonstration") and env.spec.num_players == 1


def build_model(config, env) -> PolicyValueTransformer:
    """The run's model: ``model.preset`` with ``model.overrides``, or ``model.pretrained``'s architecture."""
    return PolicyValueTransformer(model_config(config, env))


def learning_rate_schedule(config) -> optax.Schedule:
    """The run's learning rate by step. AlphaZero continues one warm-up + cosine schedule over the whole run
    (``optim.*``). The RL algorithms with a schedule of their own (GRPO, RLOO, STaR) decay that schedule
    over the imitation steps, then use ``rl.learning_rate`` after a linear warm-up of ``rl.warmup_steps``:
    a fine-tuning rate, not the imitation rate continued (Adam's first updates at an imitation rate undo a
    trained policy)."""
    o = config.optim
    algo = get_algorithm(config)
    own = algo is not None and algo.own_learning_rate
    span = config.sft.steps if own else config.total_steps
    imitation = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.learning_rate,
        warmup_steps=min(o.warmup_steps, max(span - 1, 1)),
        decay_steps=max(span, o.warmup_steps + 1),
        end_value=o.learning_rate * o.end_learning_rate_ratio,
    )
    if not own:
        return imitation
    rl = config.rl
    if rl.warmup_steps:
        after = optax.linear_schedule(0.0, rl.learning_rate, rl.warmup_steps)
    else:
        after = optax.constant_schedule(rl.learning_rate)
    return optax.join_schedules([imitation, after], [config.sft.steps])


def build_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    schedule = learning_rate_schedule(config)
    tx = optax.chain(optax.clip_by_global_norm(o.grad_clip), optax.adamw(schedule, weight_decay=o.weight_decay))
    if not config.model.get("lora_rank", 0):
        return tx
    # LoRA: the base params are frozen; only the adapters and the value head have optimizer state and updates
    return optax.multi_transform({"adapter": tx, "frozen": optax.set_to_zero()}, param_labels)


def init_state(config, env, model, tx, *, mesh=None) -> TrainState:
    """Fresh train state (params, optimizer, empty buffer) from ``config.seed``; laid out on `mesh` if given."""
    if mesh is not None:
        return parallel.init_sharded(lambda: init_state(config, env, model, tx), mesh, model, tx)
    k_params, k_run = jax.random.split(jax.random.PRNGKey(config.seed))
    params = model.init(k_params)
    algo = get_algorithm(config)
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.int32(0),
        key=k_run,
        buffer=empty_buffer(config, env.spec, writes_tokens=env.writes_tokens),
        buffer_count=jnp.int32(0),
        ref_params=jax.tree.map(jnp.copy, params) if algo is not None and algo.uses_reference(config) else None,
        actor=init_actor(config, params) if algo is not None else None,
    )
