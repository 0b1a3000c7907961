"""The main job: imitation (SFT) warm start, then AlphaZero self-play, with checkpoints and evaluation.

    python -m jaxrl_reason.train --config configs/default.py --workdir DIR [--config.key=value ...]

Starting again with the same workdir resumes from its latest checkpoint and continues exactly as if
never stopped: the whole state (params, optimizer, step, RNG key, replay) is one pytree, every
step's randomness is ``fold_in(key, step)`` and the SFT data order is a function of the step.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import signal
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.experimental import multihost_utils

from jaxrl_reason import parallel
from jaxrl_reason.algorithms.alphazero import alphazero_loss
from jaxrl_reason.algorithms.common import VALUE_HEAD_PARAMS, value_head_only
from jaxrl_reason.algorithms.distill import distill_loss, distillation_set
from jaxrl_reason.algorithms.sft import sft_loss
from jaxrl_reason.checkpoint import Checkpointer
from jaxrl_reason.config import ConfigError, config_to_dict, load_config
from jaxrl_reason.data import demonstration_set, run_problem_sets
from jaxrl_reason.envs.core import tree_select
from jaxrl_reason.envs.registry import make
from jaxrl_reason.metrics import MetricsWriter, plot_learning_curves
from jaxrl_reason.models import PolicyValueTransformer, TransformerConfig
from jaxrl_reason.rlvr import RL_ALGORITHMS, make_rl_fns, rl_buffer, uses_reference
from jaxrl_reason.selfplay import selfplay
from jaxrl_reason.types import Trajectory

#: Fault injection for tests: SIGKILL the process right after the checkpoint of this step is on disk.
KILL_AT_STEP_ENV = "JAXRL_REASON_KILL_AT_STEP"
_REPLAY_FIELDS = ("tokens", "prompt_length", "actions", "players", "valid", "rewards", "policy")
# + "values" (the search's root values) when selfplay.value_target_mix > 0


@struct.dataclass
class TrainState:
    """Everything a run needs to continue bit for bit. One pytree, saved whole by Orbax."""

    params: Any
    opt_state: Any
    step: jax.Array  # [] int32: optimizer updates done
    key: jax.Array  # base PRNG key; step s uses fold_in(key, s)
    replay: dict  # self-play replay: _REPLAY_FIELDS arrays with a leading [capacity] axis
    replay_count: jax.Array  # [] int32: episodes ever inserted
    ref_params: Any = None  # GRPO/RLOO with rl.kl_coef > 0: the frozen reference policy (params at RL start)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def is_reasoning_task(env) -> bool:
    return hasattr(env, "demonstration") and env.spec.num_players == 1


def build_model(config, env) -> PolicyValueTransformer:
    overrides = dict(config.model.overrides)
    return PolicyValueTransformer(TransformerConfig.for_env(env.spec, config.model.preset, **overrides))


def build_optimizer(config) -> optax.GradientTransformation:
    o = config.optim
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=o.learning_rate,
        warmup_steps=min(o.warmup_steps, max(config.total_steps - 1, 1)),
        decay_steps=max(config.total_steps, o.warmup_steps + 1),
        end_value=o.learning_rate * o.end_learning_rate_ratio,
    )
    return optax.chain(optax.clip_by_global_norm(o.grad_clip), optax.adamw(schedule, weight_decay=o.weight_decay))


def _replay_capacity(config) -> int:
    return config.selfplay.replay_iterations * config.selfplay.num_episodes


def init_state(config, env, model, tx, *, mesh=None) -> TrainState:
    """Fresh train state (params, optimizer, empty replay) from ``config.seed``; laid out on `mesh` if given."""
    if mesh is not None:
        return parallel.init_sharded(lambda: init_state(config, env, model, tx), mesh, model, tx)
    key = jax.random.PRNGKey(config.seed)
    k_params, k_run = jax.random.split(key)
    params = model.init(k_params)
    spec = env.spec
    cap, steps = _replay_capacity(config), spec.max_response_length
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
    if config.algorithm in RL_ALGORITHMS:  # the RL batch lives where the replay would
        replay = rl_buffer(config, spec)
    return TrainState(
        params=params,
        opt_state=tx.init(params),
        step=jnp.int32(0),
        key=k_run,
        replay=replay,
        replay_count=jnp.int32(0),
        ref_params=jax.tree.map(jnp.copy, params) if uses_reference(config) else None,
    )


@dataclasses.dataclass(frozen=True)
class TrainFns:
    """The jitted functions of a run (compiled once, reused every step)."""

    sft_update: Any
    selfplay_iteration: Any
    rl_update: Any
    mesh: Any = None  # the jax.sharding.Mesh they are compiled for

    def batch_shardings(self, batch):
        """Shardings of a host batch (leading axis over ``data``), for ``parallel.host_batch_to_global``."""
        return parallel.batch_sharding(batch, self.mesh)


def make_train_fns(config, env, model, tx, *, mesh=None) -> TrainFns:
    """Builds the pure update functions of a run and jits them (state donated).

    They are compiled for `mesh` (default: the config's ``mesh.*`` over all devices) with the train
    state's shardings (:func:`jaxrl_reason.parallel.state_shardings`); batches are split over ``data``.
    """
    mesh = parallel.mesh_from_config(config) if mesh is None else mesh
    sp = config.selfplay
    policy_from = (config.sft.steps if is_reasoning_task(env) else 0) + sp.value_warmup_steps

    def apply_grads(state: TrainState, loss_fn, *, trunk_frozen=None):
        (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        if trunk_frozen is not None:
            # Zero gradients are not enough: Adam's momentum from the phase before (SFT) and decoupled weight
            # decay would keep moving the "frozen" trunk. Only the value head's updates are applied.
            zeros = jax.tree.map(jnp.zeros_like, updates)
            head_only = {**zeros, **{name: updates[name] for name in VALUE_HEAD_PARAMS}}
            updates = tree_select(trunk_frozen, head_only, updates)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "grad_norm": optax.tree.norm(grads), "param_norm": optax.tree.norm(params)}
        return state.replace(params=params, opt_state=opt_state, step=state.step + 1), metrics

    def sft_update(state: TrainState, batch):
        batch = parallel.constrain_batch(batch, mesh)

        def loss_fn(params):
            logits, _ = model.apply(params, batch["tokens"])
            if "teacher_log_probs" in batch:  # distillation, logits mode
                return distill_loss(logits, batch)
            return sft_loss(logits, batch["tokens"], batch["prompt_length"], batch["length"])

        return apply_grads(state, loss_fn)

    def selfplay_iteration(state: TrainState):
        key = jax.random.fold_in(state.key, state.step)
        k_init, k_play = jax.random.split(jax.random.fold_in(key, 1))
        states = jax.vmap(env.init)(jax.random.split(k_init, sp.num_episodes))

        def play_one(params, one_state, one_key):  # one episode, its own key: same result on any mesh
            expand = lambda x: x[None]
            traj = selfplay(
                model,
                params,
                env,
                jax.tree.map(expand, one_state),
                one_key,
                num_simulations=sp.num_simulations,
                top_k=sp.top_k,
                algorithm=sp.search,
                max_depth=sp.max_depth,
                temperature=sp.temperature,
                rescale_values=sp.rescale_values,
                rollouts=sp.rollouts,
                rollout_weight=sp.rollout_weight,
            )
            return jax.tree.map(lambda x: x[0], traj)

        # each device plays its own episodes (shard_map over the mesh; see parallel.map_examples)
        traj = parallel.map_examples(play_one, mesh, state.params, states, jax.random.split(k_play, sp.num_episodes))
        cap = _replay_capacity(config)
        idx = (state.replay_count + jnp.arange(sp.num_episodes)) % cap
        replay = {k: v.at[idx].set(getattr(traj, k).astype(v.dtype)) for k, v in state.replay.items()}
        returns = traj.returns
        metrics = {
            "selfplay_return": returns[:, 0].mean(),
            "selfplay_length": traj.valid.sum(1).mean(),
        }
        if env.spec.num_players == 2:
            metrics["selfplay_draw_rate"] = (returns[:, 0] == 0).mean()
        return state.replace(replay=replay, replay_count=state.replay_count + sp.num_episodes), metrics

    def rl_update(state: TrainState):
        key = jax.random.fold_in(jax.random.fold_in(state.key, state.step), 2)
        filled = jnp.minimum(state.replay_count, _replay_capacity(config))
        idx = jax.random.randint(key, (sp.batch_size,), 0, jnp.maximum(filled, 1))
        batch = parallel.constrain_batch({k: v[idx] for k, v in state.replay.items()}, mesh)
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

        return apply_grads(state, loss_fn, trunk_frozen=warmup if sp.value_warmup_steps else None)

    if config.algorithm in RL_ALGORITHMS:
        selfplay_iteration, rl_update = make_rl_fns(
            config, env, model, apply_grads, rl_from=policy_from - sp.value_warmup_steps
        )
    return parallel.jit_train_fns(
        TrainFns,
        mesh,
        jax.eval_shape(lambda: init_state(config, env, model, tx)),
        model,
        tx,
        sft_update=sft_update,
        selfplay_iteration=selfplay_iteration,
        rl_update=rl_update,
    )


def sft_batch(data: dict[str, np.ndarray], step: int, batch_size: int, seed: int) -> dict[str, np.ndarray]:
    """The SFT batch of `step`: a deterministic function of (seed, step), epoch-wise shuffled."""
    n = data["tokens"].shape[0]
    j = np.arange(step * batch_size, (step + 1) * batch_size)
    epochs, pos = j // n, j % n
    idx = np.empty_like(j)
    for e in np.unique(epochs):
        perm = np.random.default_rng([seed, int(e)]).permutation(n)
        idx[epochs == e] = perm[pos[epochs == e]]
    return {k: v[idx] for k, v in data.items()}


def init_params_from(config, env, model, state: TrainState) -> tuple[TrainState, str]:
    """`state` with the params of run ``config.init.workdir`` (checkpoint ``config.init.step``, -1 = latest).

    The reference policy of GRPO/RLOO (if any) becomes those params too; the optimizer state, step, key
    and replay stay as given (a fresh run's). The source run must have the same model config and the
    same action space. Returns ``(state, "<checkpoint directory>/<step>")``.
    """
    from jaxrl_reason.evaluation import Agent  # the restore-a-run logic lives there

    src_dir = config.init.workdir
    step = None if config.init.step < 0 else int(config.init.step)
    if not os.path.isdir(os.path.join(src_dir, "checkpoints")):  # never create directories in the source
        raise ConfigError(f"init.workdir={src_dir!r} has no checkpoints/ (expected a run directory with a checkpoint)")
    with Checkpointer(src_dir) as ckpt:  # the step to take, named in the log line
        step = ckpt.latest_step() if step is None else step
        source = f"{ckpt.directory}/{step}"
    try:
        src = Agent.load(src_dir, step=step)
    except FileNotFoundError as e:
        raise ConfigError(f"init.workdir={src_dir!r}: {e} (expected a run directory with a checkpoint)") from None
    mine, theirs = dataclasses.asdict(model.config), dataclasses.asdict(src.model.config)
    if mine != theirs:
        diff = {k: (theirs.get(k), v) for k, v in mine.items() if theirs.get(k) != v}
        raise ConfigError(
            f"init.workdir={src_dir!r} holds a model that differs from this run's in {diff} (theirs, ours); "
            "warm starts need the same model config (model.preset and model.overrides)"
        )
    if src.env.spec.num_actions != env.spec.num_actions:
        raise ConfigError(
            f"init.workdir={src_dir!r} was trained on {src.env.spec.env_id} with {src.env.spec.num_actions} "
            f"actions; this run's {env.spec.env_id} has {env.spec.num_actions}"
        )
    params = jax.tree.map(lambda new, like: jax.device_put(new, like.sharding), src.params, state.params)
    ref = None if state.ref_params is None else jax.tree.map(jnp.copy, params)
    return state.replace(params=params, ref_params=ref), source


def _meta(config, env) -> dict:
    return {
        "config": config_to_dict(config),
        "env_id": env.spec.env_id,
        "env_kwargs": dict(config.env_kwargs),
        "model": dataclasses.asdict(build_model(config, env).config),
    }


def _check_compatible(saved: dict, current: dict, workdir: str) -> None:
    as_saved = json.loads(json.dumps(current))  # tuples come back from the JSON meta as lists
    if isinstance(saved.get("model"), dict):  # fields added since the run was saved take their defaults
        try:
            saved = {**saved, "model": dataclasses.asdict(TransformerConfig(**saved["model"]))}
        except (TypeError, ValueError):
            pass  # not a model this version can build: reported as a mismatch below
    for key in ("env_id", "env_kwargs", "model"):
        if saved.get(key) != as_saved.get(key):
            raise ConfigError(
                f"workdir {workdir!r} holds a run with {key}={saved.get(key)!r}, but the config asks for "
                f"{current.get(key)!r}; resume with the same {key} or use a new workdir"
            )


def train(config, workdir: str, *, progress: bool = True) -> dict:
    """Runs (or resumes) training; returns the final metrics dict. See the module docstring."""
    from jaxrl_reason.evaluation import Agent, evaluate  # evaluation shares the model and env

    t_start = time.time()
    parallel.maybe_initialize_distributed(config)  # before any device is touched
    os.makedirs(workdir, exist_ok=True)
    env = make(config.env_id, **dict(config.env_kwargs))
    model = build_model(config, env)
    tx = build_optimizer(config)
    mesh = parallel.mesh_from_config(config)
    fns = make_train_fns(config, env, model, tx, mesh=mesh)
    meta = _meta(config, env)
    is_main = jax.process_index() == 0
    _log(
        is_main,
        f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.default_backend()} devices, "
        f"{jax.process_count()} process(es)",
    )

    ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
    state = init_state(config, env, model, tx, mesh=mesh)
    if ckpt.latest_step() is not None:
        _check_compatible(ckpt.restore_meta(), meta, workdir)
        try:
            state, _ = ckpt.restore(state)
        except ValueError as e:  # Orbax: the saved tree has other leaves than this config's state
            if "tree structures do not match" not in str(e):
                raise
            raise ConfigError(
                f"workdir {workdir!r} holds a train state laid out for other settings (algorithm, rl.* batch sizes, "
                "selfplay.num_episodes/replay_iterations or selfplay.value_target_mix changed?); resume with the "
                "run's own settings, or start a new workdir with --config.init.workdir to take its params"
            ) from None
        _log(is_main, f"resumed from {ckpt.directory}/{int(state.step)}")
    else:
        if config.init.workdir:
            state, source = init_params_from(config, env, model, state)
            _log(is_main, f"params from {source}")
        if is_main:
            with open(os.path.join(workdir, "config.json"), "w") as f:
                json.dump(meta, f, indent=2)

    reasoning = is_reasoning_task(env)
    sft_steps = config.sft.steps if reasoning else 0
    sft_data, eval_problems = None, None
    if reasoning:
        train_dicts, eval_problems = run_problem_sets(
            env, config.seed, config.sft.num_examples, config.eval.num_problems
        )
        if config.eval.get("tfds_name"):  # a fixed held-out set on disk (jaxrl_reason.datasets)
            from jaxrl_reason.datasets import read_problems

            eval_problems = read_problems(
                config.eval.tfds_name, data_dir=config.eval.tfds_data_dir, split=config.eval.tfds_split
            )
        if sft_steps > int(state.step):
            if config.distill.teacher_workdir:
                sft_data = distillation_set(config, env, model, train_dicts)
            else:
                sft_data = demonstration_set(env, train_dicts)

    agent = Agent(model=model, params=state.params, env=env, config=config, mesh=mesh)  # one compile for all evals
    writer = MetricsWriter(workdir, enabled=is_main)
    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "-1"))
    bar = _progress(config.total_steps, int(state.step), enabled=progress and is_main)
    last_eval: dict = {}
    sp_metrics: dict = {}
    step = int(state.step)
    try:
        while step < config.total_steps:
            if step < sft_steps:
                batch = sft_batch(sft_data, step, config.sft.batch_size, config.seed)
                state, metrics = fns.sft_update(state, parallel.host_batch_to_global(batch, fns.batch_shardings(batch)))
                phase = "sft"
            else:
                if config.algorithm == "none":
                    step = config.total_steps
                    break
                every = (
                    config.rl.updates_per_batch
                    if config.algorithm in RL_ALGORITHMS
                    else config.selfplay.updates_per_iteration
                )
                if (step - sft_steps) % every == 0:
                    state, sp_metrics = fns.selfplay_iteration(state)
                state, metrics = fns.rl_update(state)
                metrics = {**metrics, **sp_metrics}
                phase = config.algorithm
            step += 1
            metrics = jax.device_get(metrics)
            if not all(math.isfinite(float(metrics[k])) for k in ("loss", "param_norm")):
                raise TrainingError(
                    f"non-finite loss {float(metrics['loss'])} or parameters (norm {float(metrics['param_norm'])}) "
                    f"at step {step} ({phase}); stopped without saving "
                    f"it. The last good checkpoint is step {ckpt.latest_step()} in {ckpt.directory}. Try a lower "
                    "optim.learning_rate or optim.grad_clip."
                )
            if step % config.log_every == 0 or step == config.total_steps:
                writer.write(step, metrics, phase=phase)
            if eval_problems is not None and (step % config.eval_every == 0 or step == config.total_steps):
                agent.params = state.params
                last_eval = evaluate(
                    agent,
                    env,
                    eval_problems,
                    method=config.eval.method,
                    num_simulations=config.eval.num_simulations,
                    batch_size=config.eval.batch_size,
                )
                writer.write(step, last_eval, phase="eval")
            if step % config.checkpoint_every == 0 or step == config.total_steps:
                ckpt.save(step, state, meta)
                if step == kill_at:  # test hook: a hard crash right after a complete checkpoint
                    ckpt.wait()
                    if jax.process_count() > 1:  # every process has its shards on disk before any dies
                        multihost_utils.sync_global_devices("kill_at_step")
                    os.kill(os.getpid(), signal.SIGKILL)
            bar.set_postfix(  # no redraw here: update() redraws at most once a second
                {
                    "phase": phase,
                    "loss": f"{float(metrics['loss']):.3f}",
                    **({"acc": f"{last_eval['accuracy']:.3f}"} if "accuracy" in last_eval else {}),
                },
                refresh=False,
            )
            bar.update(1)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    summary = {"step": step, "wall_time_s": round(time.time() - t_start, 1), "workdir": workdir, **last_eval}
    if is_main:
        plot = plot_learning_curves(workdir)
        acc = (
            f"held-out accuracy {last_eval['accuracy']:.3f} ({last_eval.get('num_problems')} problems, "
            f"{config.eval.method})"
            if "accuracy" in last_eval
            else "no held-out evaluation"
        )
        print(f"done: {config.env_id} step {step}, {acc}, {summary['wall_time_s']} s; plots: {plot}", flush=True)
    return summary


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, d, refresh=True):
        pass

    def close(self):
        pass


def _progress(total: int, initial: int, *, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, mininterval=1.0)


def _log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, flush=True)


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``--config PATH --workdir DIR [--config.key=value | --config.key value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m jaxrl_reason.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="config file, e.g. configs/default.py")
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics, plots)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r} (overrides look like --config.total_steps=100)")
        item = item[len("--config.") :]
        if "=" not in item and i + 1 < len(rest):
            item, i = f"{item}={rest[i + 1]}", i + 1
        overrides.append(item)
        i += 1
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config, overrides)
        train(config, args.workdir, progress=not args.no_progress)
    except (ConfigError, TrainingError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
