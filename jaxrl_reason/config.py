"""Experiment configs: Python files with ``get_config() -> ml_collections.ConfigDict``.

Every config starts from :func:`base_config`, so all runs share one set of keys; the result is
locked (a typo is an error, not a new key). Command-line overrides ``--config.key=value`` are parsed
against the type of the existing value. Every problem is reported as one :class:`ConfigError` that
says what was expected and what came.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import os
from collections.abc import Iterable
from typing import Any

import ml_collections


class ConfigError(ValueError):
    """A config file, key or value is not what the trainer expects."""


def base_config() -> ml_collections.ConfigDict:
    """All keys a training run understands, with defaults (an addition task, AlphaZero after SFT)."""
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.env_id = "addition-v0"
    c.env_kwargs = ml_collections.ConfigDict()  # difficulty overrides passed to jr.make
    c.algorithm = "alphazero"  # after the SFT warm start: "alphazero" | "grpo" | "rloo" | "none"
    c.total_steps = 1000  # optimizer updates in all (SFT + RL)
    c.checkpoint_every = 200
    c.eval_every = 200
    c.log_every = 20
    c.keep_checkpoints = 3

    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"
    c.model.overrides = ml_collections.ConfigDict()  # e.g. d_model, num_layers

    c.optim = ml_collections.ConfigDict()
    c.optim.learning_rate = 1e-3
    c.optim.warmup_steps = 50
    c.optim.end_learning_rate_ratio = 0.1  # cosine decay to this fraction of the peak
    c.optim.weight_decay = 1e-4
    c.optim.grad_clip = 1.0

    c.sft = ml_collections.ConfigDict()
    c.sft.steps = 500  # SFT updates before RL (reasoning tasks; games skip SFT)
    c.sft.batch_size = 64
    c.sft.num_examples = 4096  # size of the demonstration set (problems sampled from seed)

    c.selfplay = ml_collections.ConfigDict()
    c.selfplay.num_episodes = 64  # episodes per self-play iteration
    c.selfplay.num_simulations = 16
    c.selfplay.top_k = 8
    c.selfplay.search = "gumbel"  # "gumbel" | "muzero"
    c.selfplay.max_depth = 8
    c.selfplay.rescale_values = True  # min-max Q rescaling in the search (False for 0/1-reward tasks)
    c.selfplay.temperature = 1.0  # sampling temperature over the search policy (0 = argmax)
    c.selfplay.updates_per_iteration = 4
    c.selfplay.batch_size = 64  # episodes per update, drawn from the replay
    c.selfplay.replay_iterations = 4  # the replay keeps the last N iterations
    c.selfplay.value_weight = 1.0
    # RL steps at the start that train only the value head (trunk frozen, policy weight 0): the search's
    # Q-values come from the value head, so its policy targets are noise until it has learned outcomes.
    c.selfplay.value_warmup_steps = 0
    # Value target (1 - m) * outcome + m * the search's root value (lower variance); m > 0 keeps the root
    # values in the replay, so a run's m must stay 0 or > 0 across resumes (warm-start with init.* instead).
    c.selfplay.value_target_mix = 0.0
    # Random playouts per new leaf of the search, mixed into its value: (1 - w) * value head + w * mean
    # playout return (AlphaGo; board games only: random token strings never verify). 0 = value head only.
    c.selfplay.rollouts = 0
    c.selfplay.rollout_weight = 0.5

    # GRPO / RLOO (algorithm="grpo" | "rloo"): G sampled responses per problem, group advantages, PPO clipping.
    c.rl = ml_collections.ConfigDict()
    c.rl.group_size = 8  # G responses per problem
    c.rl.num_problems = 16  # problems per sampled batch (batch = num_problems * group_size responses)
    c.rl.updates_per_batch = 2  # optimizer steps on each sampled batch (PPO epochs)
    c.rl.clip_eps = 0.2
    c.rl.kl_coef = 0.0  # k3 KL to the params at the start of RL; 0 = off (no reference forward)
    c.rl.temperature = 1.0  # sampling temperature of the behaviour policy
    c.rl.adv_eps = 1e-6  # GRPO: (r - mean) / (std + adv_eps)

    # Warm start from another run: a fresh run (no checkpoint in its workdir yet) takes its params from
    # that run's checkpoint, e.g. RL from an SFT run. The model config must be the same; the optimizer,
    # step counter and replay start fresh. Ignored when the workdir already has a checkpoint (resume).
    c.init = ml_collections.ConfigDict()
    c.init.workdir = ""  # "" = off (random init); else a run directory with a checkpoint
    c.init.step = -1  # which of its checkpoints; -1 = the latest

    # Distillation warm start: SFT on a teacher run's samples instead of the task's demonstrations.
    c.distill = ml_collections.ConfigDict()
    c.distill.teacher_workdir = ""  # "" = off (demonstrations); else a run directory with a checkpoint
    c.distill.mode = "sequence"  # "sequence": CE on teacher samples; "logits": KL(teacher || student) per token
    c.distill.keep = "correct"  # "correct" | "all": which teacher samples to keep (sequence mode)
    c.distill.temperature = 1.0  # teacher sampling temperature
    c.distill.samples_per_problem = 1

    c.eval = ml_collections.ConfigDict()
    c.eval.num_problems = 256  # held-out problems (disjoint from the SFT set)
    c.eval.method = "greedy"  # "greedy" | "sample" | "mcts"
    c.eval.num_simulations = 16
    c.eval.batch_size = 256
    # Held-out problems from a TFDS dataset on disk (see jaxrl_reason.datasets) instead of sampled ones.
    c.eval.tfds_name = ""  # e.g. "addition_heldout"; empty: sample from the seed
    c.eval.tfds_data_dir = ""  # directory holding the dataset (shared across machines)
    c.eval.tfds_split = "test"

    # Device mesh (jaxrl_reason.parallel): batch over `data`, params/optimizer over `fsdp`; -1 = all the rest.
    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1
    c.mesh.fsdp = 1

    # Multi-host (jax.distributed.initialize): set coordinator_address (host:port) with num_processes and
    # process_id, or enabled=True to let JAX detect the cluster (Cloud TPU, SLURM).
    c.distributed = ml_collections.ConfigDict()
    c.distributed.enabled = False
    c.distributed.coordinator_address = ""
    c.distributed.num_processes = 0  # 0: detect
    c.distributed.process_id = -1  # -1: detect
    return c


def load_config(path: str | os.PathLike, overrides: Iterable[str] = ()) -> ml_collections.ConfigDict:
    """Loads ``get_config()`` from a Python file, applies ``key=value`` overrides, locks it."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist (expected e.g. configs/default.py)")
    spec = importlib.util.spec_from_file_location(f"_jaxrl_reason_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ConfigError(f"config file {path!r} defines no get_config() -> ConfigDict")
    config = module.get_config()
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, expected a ConfigDict")
    _check_keys(config, base_config(), prefix="")
    config.lock()
    apply_overrides(config, overrides)
    validate(config)
    return config


def _check_keys(config, base, prefix: str) -> None:
    for key, value in config.items():
        full = prefix + key
        if key not in base:
            raise ConfigError(f"unknown config key {full!r}{_suggest(key, base.keys())}")
        if isinstance(base[key], ml_collections.ConfigDict) and key not in ("env_kwargs", "overrides"):
            _check_keys(value, base[key], full + ".")


def _suggest(key: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(choices), n=1)
    return f"; did you mean {close[0]!r}?" if close else f"; known keys: {sorted(choices)}"


def parse_override(text: str) -> tuple[str, str]:
    """``"a.b=3"`` -> ``("a.b", "3")``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. total_steps=100)")
    return key, value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Sets ``key=value`` overrides on a locked config, parsing each value as the existing type.

    Keys under ``env_kwargs`` and ``model.overrides`` may be new (they are passed through to the env
    and the model, which check them); their values are parsed as JSON, falling back to a string.
    """
    for text in overrides:
        key, raw = parse_override(text)
        *parents, leaf = key.split(".")
        node = config
        for i, part in enumerate(parents):
            if part not in node:
                raise ConfigError(f"unknown config key {'.'.join(parents[: i + 1])!r}{_suggest(part, node.keys())}")
            node = node[part]
            if not isinstance(node, ml_collections.ConfigDict):
                raise ConfigError(f"config key {'.'.join(parents[: i + 1])!r} is a value, not a group")
        open_group = parents in (["env_kwargs"], ["model", "overrides"])
        if leaf not in node and not open_group:
            raise ConfigError(f"unknown config key {key!r}{_suggest(leaf, node.keys())}")
        current = node[leaf] if leaf in node else None
        value = _parse_value(key, raw, current)
        with node.unlocked() if open_group else _nullcontext():
            node[leaf] = value


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _parse_value(key: str, raw: str, current: Any) -> Any:
    def fail(expected: str):
        raise ConfigError(f"config key {key!r} expects {expected}, got {raw!r}")

    if isinstance(current, bool):
        if raw.lower() in ("true", "1", "yes"):
            return True
        if raw.lower() in ("false", "0", "no"):
            return False
        fail("a bool (true/false)")
    if isinstance(current, int):
        try:
            return int(raw)
        except ValueError:
            fail("an int")
    if isinstance(current, float):
        try:
            return float(raw)
        except ValueError:
            fail("a float")
    if isinstance(current, str):
        return raw
    if isinstance(current, ml_collections.ConfigDict):
        fail("a group of keys (set its members, e.g. key.member=value)")
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


_CHOICES = {
    "algorithm": ("alphazero", "grpo", "rloo", "none"),
    "distill.mode": ("sequence", "logits"),
    "distill.keep": ("correct", "all"),
    "selfplay.search": ("gumbel", "muzero"),
    "eval.method": ("greedy", "sample", "mcts"),
}
_POSITIVE = (
    "total_steps",
    "checkpoint_every",
    "eval_every",
    "log_every",
    "keep_checkpoints",
    "sft.batch_size",
    "sft.num_examples",
    "selfplay.num_episodes",
    "selfplay.num_simulations",
    "selfplay.top_k",
    "selfplay.max_depth",
    "selfplay.updates_per_iteration",
    "selfplay.batch_size",
    "selfplay.replay_iterations",
    "rl.group_size",
    "rl.num_problems",
    "rl.updates_per_batch",
    "rl.temperature",
    "rl.adv_eps",
    "distill.temperature",
    "distill.samples_per_problem",
    "eval.num_problems",
    "eval.num_simulations",
    "eval.batch_size",
)


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks value ranges and choices; raises one ConfigError naming the key."""
    for key, choices in _CHOICES.items():
        if _get(config, key) not in choices:
            raise ConfigError(f"config key {key!r} must be one of {choices}, got {_get(config, key)!r}")
    for key in _POSITIVE:
        if _get(config, key) <= 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {_get(config, key)!r}")
    if config.sft.steps < 0 or config.sft.steps > config.total_steps:
        raise ConfigError(f"sft.steps must be in [0, total_steps={config.total_steps}], got {config.sft.steps}")
    if not config.optim.learning_rate > 0:
        raise ConfigError(f"optim.learning_rate must be > 0, got {config.optim.learning_rate}")
    if config.selfplay.value_warmup_steps < 0:
        raise ConfigError(f"selfplay.value_warmup_steps must be >= 0, got {config.selfplay.value_warmup_steps}")
    for axis in ("data", "fsdp"):
        size = config.mesh[axis]
        if size == 0 or size < -1:
            raise ConfigError(
                f"config key 'mesh.{axis}' must be a positive size or -1 (all remaining devices), got {size}"
            )
    if config.mesh.data == -1 and config.mesh.fsdp == -1:
        raise ConfigError("only one of mesh.data / mesh.fsdp may be -1 (all remaining devices)")
    d = config.distributed
    if d.coordinator_address and (d.num_processes <= 0 or d.process_id < 0 or d.process_id >= d.num_processes):
        raise ConfigError(
            "distributed.coordinator_address needs distributed.num_processes > 0 and 0 <= distributed.process_id < "
            f"num_processes, got num_processes={d.num_processes}, process_id={d.process_id}"
        )
    if config.eval.tfds_name and not config.eval.tfds_data_dir:
        raise ConfigError(
            f"eval.tfds_name={config.eval.tfds_name!r} needs eval.tfds_data_dir (the dataset's directory)"
        )
    if not 0.0 <= config.selfplay.value_target_mix <= 1.0:
        raise ConfigError(f"selfplay.value_target_mix must be in [0, 1], got {config.selfplay.value_target_mix}")
    if config.init.step < -1:
        raise ConfigError(f"init.step must be a checkpoint step or -1 (the latest), got {config.init.step}")
    if config.selfplay.rollouts < 0 or not 0.0 <= config.selfplay.rollout_weight <= 1.0:
        raise ConfigError(
            "selfplay.rollouts must be >= 0 and selfplay.rollout_weight in [0, 1], got "
            f"{config.selfplay.rollouts}, {config.selfplay.rollout_weight}"
        )
    if config.selfplay.temperature < 0:
        raise ConfigError(f"selfplay.temperature must be >= 0, got {config.selfplay.temperature}")
    _validate_rl(config)


def _validate_rl(config) -> None:
    if config.algorithm == "rloo" and config.rl.group_size < 2:
        raise ConfigError(f"rl.group_size must be >= 2 for RLOO (leave-one-out), got {config.rl.group_size}")
    if not 0 < config.rl.clip_eps < 1:
        raise ConfigError(f"rl.clip_eps must be in (0, 1), got {config.rl.clip_eps}")
    if config.rl.kl_coef < 0:
        raise ConfigError(f"rl.kl_coef must be >= 0 (0 = off), got {config.rl.kl_coef}")


def saved_config(saved: dict) -> ml_collections.ConfigDict:
    """A run's saved config (``config.json`` / checkpoint meta) over today's defaults: keys added since the
    run was saved take their :func:`base_config` values, so older runs still load."""

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            out[k] = merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
        return out

    return ml_collections.ConfigDict(merge(config_to_dict(base_config()), saved))


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """A JSON-able plain dict of the config (saved beside checkpoints)."""
    return json.loads(config.to_json())
