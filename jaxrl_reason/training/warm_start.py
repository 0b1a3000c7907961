"""Starting a run: resume from its own checkpoint, or warm-start params from another run's."""

from __future__ import annotations

import dataclasses
import json
import os

import jax
import jax.numpy as jnp

from jaxrl_reason.config import ConfigError, config_to_dict
from jaxrl_reason.models import TransformerConfig
from jaxrl_reason.run.agent import Agent
from jaxrl_reason.run.checkpoint import Checkpointer, CheckpointError
from jaxrl_reason.run.pretrained import NO_CHAT, chat_options, pretrained_dir, pretrained_params
from jaxrl_reason.training.state import TrainState, build_model


def run_meta(config, env) -> dict:
    """The JSON saved beside every checkpoint: the config, env id and kwargs, the prompt's chat options and the
    model config."""
    return {
        "config": config_to_dict(config),
        "env_id": env.spec.env_id,
        "env_kwargs": dict(config.env_kwargs),
        "chat": chat_options(config),
        "model": dataclasses.asdict(build_model(config, env).config),
    }


def check_compatible(saved: dict, current: dict, workdir: str) -> None:
    """Raises ConfigError when a run's saved env or model differs from what the config asks for."""
    as_saved = json.loads(json.dumps(current))  # tuples come back from the JSON meta as lists
    saved = {"chat": NO_CHAT, **saved}  # runs saved before chat templates: no chat
    if isinstance(saved.get("model"), dict):  # fields added since the run was saved take their defaults
        try:
            model = dataclasses.asdict(TransformerConfig(**saved["model"]))
            saved = {**saved, "model": json.loads(json.dumps(model))}  # tuples as lists, as in `as_saved`
        except (TypeError, ValueError):
            pass  # not a model this version can build: reported as a mismatch below
    for key in ("env_id", "env_kwargs", "chat", "model"):
        if saved.get(key) != as_saved.get(key):
            raise ConfigError(
                f"workdir {workdir!r} holds a run with {key}={saved.get(key)!r}, but the config asks for "
                f"{current.get(key)!r}; resume with the same {key} or use a new workdir"
            )


def restore(ckpt: Checkpointer, state: TrainState, workdir: str) -> TrainState:
    """`state` restored from the latest checkpoint; a layout mismatch is one ConfigError (nothing written)."""
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
    return state


def init_params_from(config, env, model, state: TrainState) -> tuple[TrainState, str]:
    """`state` with the params of run ``config.init.workdir`` (checkpoint ``config.init.step``, -1 = latest).

    The reference policy of GRPO/RLOO (if any) becomes those params too; the optimizer state, step, key
    and buffer stay as given (a fresh run's). The source run must have the same model config and the
    same action space. Returns ``(state, "<checkpoint directory>/<step>")``. Reads the source only.
    """
    src_dir = config.init.workdir
    step = None if config.init.step < 0 else int(config.init.step)
    try:
        with Checkpointer(src_dir, read_only=True) as ckpt:  # the step to take, named in the log line
            step = ckpt.latest_good_step() if step is None else step
            source = f"{ckpt.directory}/{step}"
        src = Agent.load(src_dir, step=step)
    except (FileNotFoundError, CheckpointError) as e:
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


def init_params_pretrained(config, env, state: TrainState, *, mesh=None) -> tuple[TrainState, str]:
    """`state` with ``model.pretrained``'s params (and GRPO/RLOO's reference policy the same); the optimizer
    state, step, key and buffer stay a fresh run's. Returns ``(state, DIR)``. Only for a fresh run: a resumed
    one takes its params from its own checkpoint."""
    params = _overlay(state.params, pretrained_params(config, env, mesh=mesh))  # LoRA adapters stay fresh
    params = jax.tree.map(lambda new, like: jax.device_put(new, like.sharding), params, state.params)
    ref = None if state.ref_params is None else jax.tree.map(jnp.copy, params)
    return state.replace(params=params, ref_params=ref), pretrained_dir(config)


def _overlay(fresh: dict, loaded: dict) -> dict:
    """`fresh` with every leaf that `loaded` has replaced by `loaded`'s."""
    if not isinstance(fresh, dict):
        return loaded
    return {k: _overlay(v, loaded[k]) if k in loaded else v for k, v in fresh.items()}


def write_meta(workdir: str, meta: dict) -> None:
    with open(os.path.join(workdir, "config.json"), "w") as f:
        json.dump(meta, f, indent=2)
