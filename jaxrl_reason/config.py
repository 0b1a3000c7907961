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
import math
import os
import traceback
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
    # after the SFT warm start: "alphazero" | "grpo" | "rloo" | "star" | "step_search" | "none"
    c.algorithm = "alphazero"
    c.total_steps = 1000  # optimizer updates in all (SFT + RL)
    c.checkpoint_every = 200
    c.eval_every = 200
    c.log_every = 20
    c.keep_checkpoints = 3

    c.model = ml_collections.ConfigDict()
    c.model.preset = "tiny"
    c.model.overrides = ml_collections.ConfigDict()  # e.g. d_model, num_layers
    # A Hugging Face model directory (config.json + model.safetensors; Llama 3, Qwen2/2.5, Qwen3, Gemma 2): a
    # fresh run starts from its weights (jr.load_pretrained) instead of model.preset's random init, and when
    # the directory holds a tokenizer.json the task runs over that vocabulary (jr.with_tokenizer). A resumed
    # run takes its params from its own checkpoint. model.overrides may then set only PRETRAINED_OVERRIDES.
    c.model.pretrained = ""
    # With model.pretrained over its tokenizer: True formats each prompt with the tokenizer's chat template (one
    # user message, the assistant's turn opened), after a system message when system_prompt is not empty.
    c.model.chat_template = False
    c.model.system_prompt = ""
    # LoRA (jaxrl_reason/models/lora.py): rank > 0 freezes the base params and trains low-rank adapters of the
    # projections named in lora_targets ("qkv", "attn_out", "mlp_in", "mlp_gate", "mlp_out") and the value head.
    c.model.lora_rank = 0
    c.model.lora_alpha = 16.0
    c.model.lora_targets = ("qkv", "attn_out", "mlp_in", "mlp_gate", "mlp_out")

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
    # A teacher that gives up: problems whose demonstration is longer than this many tokens get none, so imitation
    # sees only the ones it solves within it (0 = every problem).
    c.sft.demo_max_tokens = 0
    # Length buckets, e.g. (80, 144): each SFT batch holds examples of one bucket, trimmed to its width in
    # tokens (the longest bucket is the env's max_length); () = every batch padded to max_length.
    c.sft.bucket_widths = ()

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
    c.rl.learning_rate = 1e-4  # GRPO/RLOO/STaR: the RL phase's own rate (after rl.warmup_steps), not optim.*'s
    c.rl.warmup_steps = 10
    c.rl.scale_by_std = True  # False: Dr. GRPO advantages r - mean (no std normalisation)
    c.rl.loss_agg = "token"  # "token" (DAPO: all valid tokens of the batch) | "sequence" | "constant" (Dr. GRPO)
    c.rl.clip_eps_high = -1.0  # DAPO clip-higher: the upper clip; -1 = the same as clip_eps
    c.rl.oversample = 1  # DAPO dynamic sampling: draw oversample * num_problems groups, keep informative ones
    # Dense process rewards: "steps" = the task's exact step checker rewards each correct step (1) at its last
    # token; advantages become per token: outcome advantage + process_weight * return-to-go of the normalised
    # step rewards (training/process_reward.py). "none" = outcome only.
    c.rl.process_reward = "none"
    c.rl.process_weight = 1.0
    c.rl.process_normalize = "group"  # "none" | "group" (DeepSeekMath) | "position" (per step index)
    # Bounded parameter lag (training/lag.py; GRPO, RLOO, STaR, step search, AlphaZero): each collection samples
    # with the params of max_lag collections earlier (max_lag * updates_per_batch updates old; AlphaZero:
    # selfplay.updates_per_iteration); 0 = lock-step. GRPO/RLOO then correct for it (decoupled PPO): the clip is
    # against the params at collection and each token is weighted by min(pi_collection / pi_behaviour, is_cap).
    c.rl.max_lag = 0
    c.rl.is_cap = 2.0

    # Expert iteration (algorithm="star"; STaR / ReST-EM): sample rl.group_size responses to rl.num_problems
    # problems at rl.temperature, keep those the verifier accepts, imitate them for rl.updates_per_batch steps.
    c.star = ml_collections.ConfigDict()
    c.star.max_per_problem = 0  # at most this many accepted responses per problem; 0 = all (ReST-EM)
    # > 0: the value head also learns, on every sampled response (accepted or not), to predict its final
    # reward at each of its states (an outcome reward model, ORM), weighted by this. Blind test-time search
    # (best-of-N by ORM, MCTS without the verifier) then has a value to go by; 0 = the policy alone.
    c.star.value_weight = 0.0

    # Step-level self-play (algorithm="step_search"): rl.group_size step-MCTS episodes (jr.decode
    # method="step_mcts", candidates at rl.temperature) per problem, imitated as in expert iteration
    # (star.value_weight applies). keep: "correct" = the verified ones (at most star.max_per_problem per
    # problem), "all" = every path.
    c.step_search = ml_collections.ConfigDict()
    c.step_search.num_simulations = 8
    c.step_search.num_candidates = 4
    c.step_search.max_step_length = 12
    c.step_search.max_depth = 4
    c.step_search.keep = "correct"

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
    """Loads ``get_config()`` from a Python file, applies ``key=value`` overrides, locks and validates it.

    The file is executed (as ml_collections' config files are): configs are trusted input.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path!r} does not exist (expected e.g. configs/default.py)")
    config = _run_config_file(path)
    if not isinstance(config, ml_collections.ConfigDict):
        raise ConfigError(f"{path}: get_config() returned {type(config).__name__}, expected a ConfigDict")
    _check_keys(config, base_config(), prefix="")
    config.lock()
    apply_overrides(config, overrides)
    validate(config)
    return config


def _run_config_file(path: str) -> Any:
    """Executes the file and calls its ``get_config()``; any failure is one ConfigError naming file and line."""
    spec = importlib.util.spec_from_file_location(f"_jaxrl_reason_config_{abs(hash(path))}", path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"config file {path!r} is not a Python file (expected e.g. configs/default.py)")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        where = f"{e.filename or path}:{e.lineno}"
        raise ConfigError(f"{where}: syntax error in config file {path!r}: {e.msg}") from None
    except Exception as e:
        raise ConfigError(f"{_where(path, e)}: config file raised {type(e).__name__}: {e} while loading") from e
    get_config = getattr(module, "get_config", None)
    if not callable(get_config):
        raise ConfigError(f"config file {path!r} defines no get_config() -> ConfigDict")
    try:
        return get_config()
    except Exception as e:
        raise ConfigError(f"{_where(path, e)}: get_config() raised {type(e).__name__}: {e}") from e


def _where(path: str, error: BaseException) -> str:
    """``path:line`` of the innermost traceback frame inside the config file (``path`` if none is)."""
    target = os.path.abspath(path)
    lines = [f.lineno for f in traceback.extract_tb(error.__traceback__) if os.path.abspath(f.filename) == target]
    return f"{path}:{lines[-1]}" if lines else path


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


# ---------------------------------------------------------------------------------------------------------------------
# Command-line overrides


def parse_override(text: str) -> tuple[str, str]:
    """``"a.b=3"`` -> ``("a.b", "3")``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value (e.g. total_steps=100)")
    return key, value


def apply_overrides(config: ml_collections.ConfigDict, overrides: Iterable[str]) -> None:
    """Sets ``key=value`` overrides on a locked config, parsing each value as the type of the existing value.

    bool, int, float and str parse as such; a tuple key takes ``(a, b)``, ``[a, b]`` or ``a, b`` (elements of the
    existing elements' type), and a ``(min, max)`` pair key also one value ``v`` meaning ``(v, v)``. Keys under
    ``env_kwargs`` and ``model.overrides`` may be new (the env and the model check them): their values parse as
    JSON, then as a tuple, else stay a string; an int there may be replaced by a ``(min, max)`` pair.
    """
    for text in overrides:
        key, raw = parse_override(text)
        *parents, leaf = key.split(".")
        node = _group(config, parents)
        free = parents in (["env_kwargs"], ["model", "overrides"])
        if leaf not in node and not free:
            raise ConfigError(f"unknown config key {key!r}{_suggest(leaf, node.keys())}")
        current = node[leaf] if leaf in node else None
        value = _parse_value(key, raw, current, free=free)
        if not free:
            node[leaf] = value
            continue
        with node.unlocked():
            if current is not None and type(value) is not type(current):
                del node[leaf]  # a free key changes type (int -> (min, max) pair): ml_collections keeps types
            node[leaf] = value


def _group(config: ml_collections.ConfigDict, parents: list[str]) -> ml_collections.ConfigDict:
    node = config
    for i, part in enumerate(parents):
        if part not in node:
            raise ConfigError(f"unknown config key {'.'.join(parents[: i + 1])!r}{_suggest(part, node.keys())}")
        node = node[part]
        if not isinstance(node, ml_collections.ConfigDict):
            raise ConfigError(f"config key {'.'.join(parents[: i + 1])!r} is a value, not a group")
    return node


_TYPE_NAMES = {bool: "a bool (true/false)", int: "an int", float: "a finite float", str: "a string"}
_ELEMENT_NAMES = {bool: "bool", int: "int", float: "float", str: "string"}
_BOOLS = {"true": True, "yes": True, "1": True, "false": False, "no": False, "0": False}
_BRACKETS = {"(": ")", "[": "]"}


def _parse_value(key: str, raw: str, current: Any, *, free: bool = False) -> Any:
    if isinstance(current, ml_collections.ConfigDict):
        raise ConfigError(f"config key {key!r} expects a group of keys (set its members, e.g. key.member=value)")
    if current is None:
        return _parse_free(raw)
    if isinstance(current, (tuple, list)):
        return _parse_tuple(key, raw, current)
    if free and type(current) is int and _split_tuple(raw) is not None:
        return _parse_tuple(key, raw, (current, current))  # an int-or-(min, max) kwarg given as a range
    try:
        return _convert(raw, type(current))
    except ValueError:
        raise ConfigError(f"config key {key!r} expects {_TYPE_NAMES[type(current)]}, got {raw!r}") from None


def _convert(text: str, typ: type) -> Any:
    """``text`` as a ``typ`` (bool, int, float or str); ValueError if it is not one."""
    if typ is str:
        return text
    text = text.strip()
    if typ is bool:
        if text.lower() not in _BOOLS:
            raise ValueError(text)
        return _BOOLS[text.lower()]
    if typ is int:
        return int(text)
    if typ is float:
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(text)
        return value
    raise ValueError(f"cannot parse a {typ.__name__} from the command line")


def _split_tuple(text: str) -> list[str] | None:
    """``"(a, b)"``, ``"[a, b]"`` or ``"a, b"`` -> ``["a", "b"]``; None for a single value."""
    text = text.strip()
    if text[:1] in _BRACKETS and text.endswith(_BRACKETS[text[0]]):
        inner = text[1:-1].strip()
        parts = inner.split(",") if inner else []
    elif "," in text:
        parts = text.split(",")
    else:
        return None
    if len(parts) > 1 and not parts[-1].strip():
        parts = parts[:-1]  # "(3,)"
    return [p.strip() for p in parts]


def _parse_tuple(key: str, raw: str, current: tuple | list) -> tuple:
    typ = _element_type(current)
    pair = len(current) == 2  # a (min, max) range: one value v means (v, v)
    element = _ELEMENT_NAMES.get(typ, "value")
    expected = f"a tuple of {'2 ' if pair else ''}{element}s like (a, b)"
    expected += f" or one {element} v meaning (v, v)" if pair else ""
    parts = _split_tuple(raw)
    if parts is None and pair:
        parts = [raw.strip(), raw.strip()]
    if parts is None or (pair and len(parts) != 2):
        raise ConfigError(f"config key {key!r} expects {expected}, got {raw!r}")
    try:
        return tuple(_convert(_unquote(p), typ) if typ else _parse_free(p) for p in parts)
    except ValueError:
        raise ConfigError(f"config key {key!r} expects {expected}, got {raw!r}") from None


def _element_type(values: tuple | list) -> type | None:
    types = {type(v) for v in values}
    if types <= {int, float} and float in types:
        return float
    return types.pop() if len(types) == 1 and next(iter(types)) in _TYPE_NAMES else None


def _unquote(text: str) -> str:
    return text[1:-1] if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"" else text


def _parse_free(raw: str) -> Any:
    """A new key in ``env_kwargs`` / ``model.overrides``: JSON, else a tuple of such values, else the string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    parts = _split_tuple(raw)
    return raw if parts is None else tuple(_parse_free(_unquote(p)) for p in parts)


# ---------------------------------------------------------------------------------------------------------------------
# Validation: every numeric key of base_config has its domain here (a test checks that none is missing)

_CHOICES = {
    "algorithm": ("alphazero", "grpo", "rloo", "star", "step_search", "none"),
    "step_search.keep": ("correct", "all"),
    "rl.loss_agg": ("token", "sequence", "constant"),
    "rl.process_reward": ("none", "steps"),
    "rl.process_normalize": ("none", "group", "position"),
    "distill.mode": ("sequence", "logits"),
    "distill.keep": ("correct", "all"),
    "selfplay.search": ("gumbel", "muzero"),
    "eval.method": ("greedy", "sample", "mcts"),
}

_POSITIVE = ("> 0", lambda v: v > 0)
_NON_NEGATIVE = (">= 0", lambda v: v >= 0)
_AT_LEAST_ONE = (">= 1", lambda v: v >= 1)
_UNIT = ("in [0, 1]", lambda v: 0 <= v <= 1)
_OPEN_UNIT = ("in (0, 1)", lambda v: 0 < v < 1)
_CLIP_OR_SAME = ("in (0, 1), or -1 (the same as rl.clip_eps)", lambda v: 0 < v < 1 or v == -1)
_STEP_OR_LATEST = (">= 0 (a checkpoint step) or -1 (the latest)", lambda v: v >= -1)
_ID_OR_DETECT = (">= 0 or -1 (detect)", lambda v: v >= -1)
_SIZE_OR_MINUS_ONE = ("a positive size or -1 (all remaining devices)", lambda v: v >= 1 or v == -1)

_DOMAINS = {
    "seed": _NON_NEGATIVE,  # numpy's Generator (SFT batch order) takes no negative seeds
    "total_steps": _POSITIVE,
    "checkpoint_every": _POSITIVE,
    "eval_every": _POSITIVE,
    "log_every": _POSITIVE,
    "keep_checkpoints": _POSITIVE,
    "model.lora_rank": _NON_NEGATIVE,
    "model.lora_alpha": _POSITIVE,
    "optim.learning_rate": _POSITIVE,
    "optim.warmup_steps": _NON_NEGATIVE,
    "optim.end_learning_rate_ratio": _UNIT,
    "optim.weight_decay": _NON_NEGATIVE,
    "optim.grad_clip": _POSITIVE,  # clip_by_global_norm: 0 freezes the params, < 0 ascends the loss
    "sft.steps": _NON_NEGATIVE,
    "sft.batch_size": _POSITIVE,
    "sft.num_examples": _POSITIVE,
    "sft.demo_max_tokens": _NON_NEGATIVE,
    "selfplay.num_episodes": _POSITIVE,
    "selfplay.num_simulations": _AT_LEAST_ONE,
    "selfplay.top_k": _AT_LEAST_ONE,
    "selfplay.max_depth": _AT_LEAST_ONE,
    "selfplay.temperature": _NON_NEGATIVE,  # 0 = argmax
    "selfplay.updates_per_iteration": _POSITIVE,
    "selfplay.batch_size": _POSITIVE,
    "selfplay.replay_iterations": _POSITIVE,
    "selfplay.value_weight": _NON_NEGATIVE,
    "selfplay.value_warmup_steps": _NON_NEGATIVE,
    "selfplay.value_target_mix": _UNIT,
    "selfplay.rollouts": _NON_NEGATIVE,
    "selfplay.rollout_weight": _UNIT,
    "rl.group_size": _POSITIVE,
    "rl.num_problems": _POSITIVE,
    "rl.updates_per_batch": _POSITIVE,
    "rl.clip_eps": _OPEN_UNIT,
    "rl.kl_coef": _NON_NEGATIVE,  # 0 = off (documented)
    "rl.temperature": _POSITIVE,
    "rl.adv_eps": _POSITIVE,
    "rl.learning_rate": _POSITIVE,
    "rl.warmup_steps": _NON_NEGATIVE,
    "rl.clip_eps_high": _CLIP_OR_SAME,
    "rl.oversample": _AT_LEAST_ONE,
    "rl.process_weight": _NON_NEGATIVE,
    "rl.max_lag": _NON_NEGATIVE,
    "rl.is_cap": _POSITIVE,
    "step_search.num_simulations": _AT_LEAST_ONE,
    "step_search.num_candidates": _AT_LEAST_ONE,
    "step_search.max_step_length": _AT_LEAST_ONE,
    "step_search.max_depth": _AT_LEAST_ONE,
    "star.max_per_problem": _NON_NEGATIVE,
    "star.value_weight": _NON_NEGATIVE,
    "init.step": _STEP_OR_LATEST,
    "distill.temperature": _POSITIVE,
    "distill.samples_per_problem": _POSITIVE,
    "eval.num_problems": _POSITIVE,
    "eval.num_simulations": _AT_LEAST_ONE,
    "eval.batch_size": _POSITIVE,
    "mesh.data": _SIZE_OR_MINUS_ONE,
    "mesh.fsdp": _SIZE_OR_MINUS_ONE,
    "distributed.num_processes": _NON_NEGATIVE,  # 0 = detect
    "distributed.process_id": _ID_OR_DETECT,
}


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = node[part]
    return node


def validate(config: ml_collections.ConfigDict) -> None:
    """Checks every value's domain and the keys that constrain each other; raises one ConfigError naming the key."""
    for key, choices in _CHOICES.items():
        if _get(config, key) not in choices:
            raise ConfigError(f"config key {key!r} must be one of {choices}, got {_get(config, key)!r}")
    for key, (domain, ok) in _DOMAINS.items():
        value = _get(config, key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key {key!r} must be a number {domain}, got {value!r}")
        if not ok(value):  # NaN fails every domain
            raise ConfigError(f"config key {key!r} must be {domain}, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"config key {key!r} must be finite, got {value!r}")
    _validate_steps(config)
    _validate_pretrained(config)
    _validate_rl(config)
    _validate_devices(config)
    if config.eval.tfds_name and not config.eval.tfds_data_dir:
        raise ConfigError(
            f"eval.tfds_name={config.eval.tfds_name!r} needs eval.tfds_data_dir (the dataset's directory)"
        )


def _validate_steps(config) -> None:
    widths = tuple(config.sft.bucket_widths)
    if not all(isinstance(w, int) and w >= 2 for w in widths) or list(widths) != sorted(set(widths)):
        raise ConfigError(f"sft.bucket_widths must be increasing ints >= 2 (token widths), got {widths}")
    if config.sft.steps > config.total_steps:
        raise ConfigError(f"sft.steps must be in [0, total_steps={config.total_steps}], got {config.sft.steps}")
    warmup = config.selfplay.value_warmup_steps
    if config.algorithm == "alphazero" and config.sft.steps + warmup > config.total_steps:
        raise ConfigError(
            f"selfplay.value_warmup_steps runs after sft.steps: sft.steps + value_warmup_steps must be <= "
            f"total_steps={config.total_steps}, got {config.sft.steps} + {warmup}"
        )


#: the model.overrides a run from model.pretrained may set (the checkpoint fixes the architecture)
PRETRAINED_OVERRIDES = ("dtype", "param_dtype", "value_head", "num_value_bins")


def _validate_pretrained(config) -> None:
    if config.model.system_prompt and not config.model.chat_template:
        raise ConfigError("model.system_prompt is a message of the chat template: it needs model.chat_template=True")
    if not config.model.pretrained:
        if config.model.chat_template:
            raise ConfigError(
                "model.chat_template=True formats prompts with a pretrained tokenizer's chat template: it needs "
                "model.pretrained (a directory with tokenizer.json)"
            )
        return
    fixed = sorted(set(config.model.overrides) - set(PRETRAINED_OVERRIDES))
    if fixed:
        raise ConfigError(
            f"model.pretrained={config.model.pretrained!r} fixes the architecture: model.overrides may set only "
            f"{PRETRAINED_OVERRIDES}, got {fixed}"
        )
    if config.init.workdir:
        raise ConfigError("model.pretrained and init.workdir both name the starting params: set one of them")


def _validate_rl(config) -> None:
    lag = config.rl.max_lag
    if isinstance(lag, bool) or not isinstance(lag, int):
        raise ConfigError(f"config key 'rl.max_lag' must be an int >= 0 (collections of lag), got {lag!r}")
    if config.algorithm == "rloo" and config.rl.group_size < 2:
        raise ConfigError(f"rl.group_size must be >= 2 for RLOO (leave-one-out), got {config.rl.group_size}")
    if config.algorithm == "grpo" and config.rl.group_size < 2:
        raise ConfigError(
            f"rl.group_size must be >= 2 for GRPO (a group of one has zero advantage), got {config.rl.group_size}"
        )
    if config.rl.process_reward != "none" and config.algorithm not in ("grpo", "rloo"):
        raise ConfigError(
            f"rl.process_reward={config.rl.process_reward!r} is for algorithm 'grpo' or 'rloo', "
            f"got {config.algorithm!r}"
        )


def _validate_devices(config) -> None:
    if config.mesh.data == -1 and config.mesh.fsdp == -1:
        raise ConfigError("only one of mesh.data / mesh.fsdp may be -1 (all remaining devices)")
    d = config.distributed
    if d.coordinator_address and (d.num_processes <= 0 or d.process_id < 0):
        raise ConfigError(
            "distributed.coordinator_address needs distributed.num_processes > 0 and 0 <= distributed.process_id < "
            f"num_processes, got num_processes={d.num_processes}, process_id={d.process_id}"
        )
    if d.num_processes > 0 and d.process_id >= d.num_processes:
        raise ConfigError(
            f"distributed.process_id must be < distributed.num_processes={d.num_processes}, got {d.process_id}"
        )


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
