"""The main job's host loop: imitation (SFT) warm start, then the run's RL algorithm, with checkpoints and
held-out evaluation.

    python -m jaxrl_reason.train --config configs/default.py --workdir DIR [--config.key=value ...]

Starting again with the same workdir resumes from its latest checkpoint and continues exactly as if
never stopped: the whole state (params, optimizer, step, RNG key, buffer) is one pytree, every
step's randomness is ``fold_in(key, step)`` and the SFT data order is a function of the step. The loop
is one of the library's jit edges: it compiles the imitation update and the algorithm's ``collect`` and
``update`` once (:func:`make_train_fns`) and only logs, evaluates and checkpoints on the host.
"""

from __future__ import annotations

import dataclasses
import math
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.experimental import multihost_utils

from jaxrl_reason import parallel
from jaxrl_reason.algorithms.common import VALUE_HEAD_PARAMS
from jaxrl_reason.envs.core import tree_select
from jaxrl_reason.evaluation.heldout import evaluate
from jaxrl_reason.problems import run_problems, stream_init
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.run.metrics import MetricsWriter, plot_learning_curves
from jaxrl_reason.run.pretrained import check_saved_tokenizer, make_run_env, save_tokenizer
from jaxrl_reason.training import imitation
from jaxrl_reason.training import progress as _progress_out
from jaxrl_reason.training.algorithm import BuildContext, get_algorithm
from jaxrl_reason.training.state import TrainingError, build_model, build_optimizer, init_state, is_reasoning_task
from jaxrl_reason.training.warm_start import (
    check_compatible,
    init_params_from,
    init_params_pretrained,
    restore,
    run_meta,
    write_meta,
)

#: Fault injection for tests: SIGKILL the process right after the checkpoint of this step is on disk.
KILL_AT_STEP_ENV = "JAXRL_REASON_KILL_AT_STEP"


@dataclasses.dataclass(frozen=True)
class TrainFns:
    """The jitted functions of a run (compiled once, reused every step)."""

    sft_update: Any
    collect: Any
    update: Any
    mesh: Any = None  # the jax.sharding.Mesh they are compiled for

    def batch_shardings(self, batch):
        """Shardings of a host batch (leading axis over ``data``), for ``parallel.host_batch_to_global``."""
        return parallel.batch_sharding(batch, self.mesh)


def make_apply_grads(tx):
    """The shared gradient step: ``apply_grads(state, loss_fn, *, trunk_frozen=None) -> (state, metrics)``."""

    def apply_grads(state, loss_fn, *, trunk_frozen=None):
        (_, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
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

    return apply_grads


def make_train_fns(config, env, model, tx, *, mesh=None, heldout=()) -> TrainFns:
    """Builds the pure update functions of a run and jits them (state donated).

    They are compiled for `mesh` (default: the config's ``mesh.*`` over all devices) with the train
    state's shardings (:func:`jaxrl_reason.parallel.state_shardings`); batches are split over ``data``.
    The RL phase's ``collect``/``update`` come from the algorithm table (:mod:`jaxrl_reason.training.algorithm`);
    their problems never include `heldout` (problem dicts; :func:`jaxrl_reason.problems.stream_init`).
    """
    mesh = parallel.mesh_from_config(config) if mesh is None else mesh
    apply_grads = make_apply_grads(tx)
    fns = {"sft_update": imitation.build_update(model, mesh, apply_grads)}
    algo = get_algorithm(config)
    if algo is not None:
        start = config.sft.steps if is_reasoning_task(env) else 0
        init = stream_init(env, heldout)
        ctx = BuildContext(config, env, model, mesh, apply_grads, start, init)
        fns["collect"], fns["update"] = algo.build(ctx)
    else:
        fns["collect"] = fns["update"] = None
    abstract = jax.eval_shape(lambda: init_state(config, env, model, tx))
    return parallel.jit_train_fns(TrainFns, mesh, abstract, model, tx, **fns)


@dataclasses.dataclass
class _Run:
    """The host-side pieces of a run the loop works with."""

    config: Any
    workdir: str
    env: Any
    fns: TrainFns
    ckpt: Checkpointer
    meta: dict
    is_main: bool
    sft_data: Any = None
    train_problems: Any = None  # imitation problems (reasoning tasks), disjoint from eval_problems
    eval_problems: Any = None  # the held-out problems (reasoning tasks)
    imitation_eval: Any = None  # the held-out evaluation at the end of imitation (when RL follows)
    agent: Any = None


def _start(config, workdir: str):
    """Builds the run and its train state: resumed, warm-started or fresh. Returns ``(run, state)``."""
    parallel.maybe_initialize_distributed(config)  # before any device is touched
    os.makedirs(workdir, exist_ok=True)
    env = make_run_env(config)
    model, tx = build_model(config, env), build_optimizer(config)
    mesh = parallel.mesh_from_config(config)
    train_dicts, heldout = run_problems(env, config) if is_reasoning_task(env) else (None, None)
    run = _Run(
        config,
        workdir,
        env,
        make_train_fns(config, env, model, tx, mesh=mesh, heldout=heldout or ()),
        None,
        run_meta(config, env),
        jax.process_index() == 0,
        train_problems=train_dicts,
        eval_problems=heldout,
    )
    _progress_out.log(
        run.is_main,
        f"mesh {dict(mesh.shape)} over {jax.device_count()} {jax.default_backend()} devices, "
        f"{jax.process_count()} process(es)",
    )
    run.ckpt = Checkpointer(workdir, max_to_keep=config.keep_checkpoints)
    state = init_state(config, env, model, tx, mesh=mesh)
    if run.ckpt.latest_step() is not None:
        check_compatible(run.ckpt.restore_meta(), run.meta, workdir)
        check_saved_tokenizer(workdir, env)
        state = restore(run.ckpt, state, workdir)
        _progress_out.log(run.is_main, f"resumed from {run.ckpt.directory}/{int(state.step)}")
    else:
        if config.init.workdir:
            state, source = init_params_from(config, env, model, state)
            _progress_out.log(run.is_main, f"params from {source}")
        elif config.model.pretrained:
            state, source = init_params_pretrained(config, env, state, mesh=mesh)
            _progress_out.log(run.is_main, f"params from pretrained {source}")
        if run.is_main:
            write_meta(workdir, run.meta)
            save_tokenizer(config, workdir)
    run.agent = Agent(model=model, params=state.params, env=env, config=config, mesh=mesh)  # one compile for all evals
    return run, state


def _imitation_data(run: _Run, step: int) -> None:
    """The imitation data, built only if imitation is not finished."""
    if run.train_problems is not None and run.config.sft.steps > step:
        run.sft_data = imitation.imitation_data(run.config, run.env, run.agent.model, run.train_problems)


def _train_step(run: _Run, state, step: int, sft_steps: int, extra: dict):
    """One update: imitation, or the algorithm's (collecting first when due). Returns (state, metrics, phase)."""
    config, fns = run.config, run.fns
    if step < sft_steps:
        batch = imitation.sft_batch(
            run.sft_data, step, config.sft.batch_size, config.seed, tuple(config.sft.bucket_widths)
        )
        state, metrics = fns.sft_update(state, parallel.host_batch_to_global(batch, fns.batch_shardings(batch)))
        return state, metrics, "sft"
    if (step - sft_steps) % get_algorithm(config).collect_every(config) == 0:
        state, collected = fns.collect(state)
        extra.clear()
        extra.update(collected)
    state, metrics = fns.update(state)
    return state, {**metrics, **extra}, config.algorithm


def _check_finite(metrics: dict, step: int, phase: str, ckpt: Checkpointer) -> None:
    if not all(math.isfinite(float(metrics[k])) for k in ("loss", "param_norm")):
        raise TrainingError(
            f"non-finite loss {float(metrics['loss'])} or parameters (norm {float(metrics['param_norm'])}) "
            f"at step {step} ({phase}); stopped without saving it. The last good checkpoint is step "
            f"{ckpt.latest_step()} in {ckpt.directory}. Try a lower optim.learning_rate or optim.grad_clip."
        )


def _evaluate(run: _Run, state) -> dict:
    config = run.config
    run.agent.params = state.params
    return evaluate(
        run.agent,
        run.env,
        run.eval_problems,
        method=config.eval.method,
        num_simulations=config.eval.num_simulations,
        batch_size=config.eval.batch_size,
    )


def _save(run: _Run, state, step: int, kill_at: int) -> None:
    run.ckpt.save(step, state, run.meta)
    if step == kill_at:  # test hook: a hard crash right after a complete checkpoint
        run.ckpt.wait()
        if jax.process_count() > 1:  # every process has its shards on disk before any dies
            multihost_utils.sync_global_devices("kill_at_step")
        os.kill(os.getpid(), signal.SIGKILL)


def train(config, workdir: str, *, progress: bool = True) -> dict:
    """Runs (or resumes) training; returns the final metrics dict. See the module docstring."""
    t_start = time.time()
    run, state = _start(config, workdir)
    step = int(state.step)
    _imitation_data(run, step)
    sft_steps = config.sft.steps if run.eval_problems is not None else 0
    end = config.total_steps if get_algorithm(config) is not None else min(config.total_steps, sft_steps)
    writer = MetricsWriter(workdir, enabled=run.is_main)
    kill_at = int(os.environ.get(KILL_AT_STEP_ENV, "-1"))
    bar = _progress(config.total_steps, step, enabled=progress and run.is_main)
    last_eval, extra = {}, {}
    try:
        while step < end:
            state, metrics, phase = _train_step(run, state, step, sft_steps, extra)
            step += 1
            metrics = jax.device_get(metrics)
            _check_finite(metrics, step, phase, run.ckpt)
            if step % config.log_every == 0 or step == end:
                writer.write(step, metrics, phase=phase)
            imitation_end = step == sft_steps and end > sft_steps
            if run.eval_problems is not None and (step % config.eval_every == 0 or step == end or imitation_end):
                last_eval = _evaluate(run, state)
                writer.write(step, last_eval, phase="eval")
                if imitation_end:
                    _end_of_imitation(run, bar, step, last_eval)
            if step % config.checkpoint_every == 0 or step == end:
                _save(run, state, step, kill_at)
            bar.show(step, phase, metrics, last_eval)
    finally:
        bar.close()
        run.ckpt.close()
        writer.close()
    return _summary(run, config.total_steps if end < config.total_steps else step, t_start, last_eval)


def _end_of_imitation(run: _Run, bar, step: int, result: dict) -> None:
    run.imitation_eval = result
    if run.is_main:
        acc = result["accuracy"]
        bar.note(f"end of imitation (step {step}): held-out accuracy {acc:.3f}; now {run.config.algorithm}")


def _progress(total: int, initial: int, *, enabled: bool):
    return _progress_out.Bar(total, initial) if enabled else _progress_out.NoBar()


def _summary(run: _Run, step: int, t_start: float, last_eval: dict) -> dict:
    config = run.config
    summary = {"step": step, "wall_time_s": round(time.time() - t_start, 1), "workdir": run.workdir, **last_eval}
    if run.imitation_eval is not None:
        summary["imitation_accuracy"] = run.imitation_eval["accuracy"]
    if run.is_main:
        plot = plot_learning_curves(run.workdir)
        acc = (
            f"held-out accuracy {last_eval['accuracy']:.3f} ({last_eval.get('num_problems')} problems, "
            f"{config.eval.method})"
            if "accuracy" in last_eval
            else "no held-out evaluation"
        )
        if "imitation_accuracy" in summary and "accuracy" in last_eval:
            gain = 100 * (last_eval["accuracy"] - summary["imitation_accuracy"])
            acc += f"; end of imitation {summary['imitation_accuracy']:.3f}, {config.algorithm} {gain:+.1f} points"
        print(f"done: {config.env_id} step {step}, {acc}, {summary['wall_time_s']} s; plots: {plot}", flush=True)
    return summary
