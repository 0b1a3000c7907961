"""A run's env and model, from ``model.preset`` or from a pretrained model (``model.pretrained=DIR``).

With ``model.pretrained`` the model's config comes from ``DIR/config.json`` (:func:`jr.models.pretrained_config`,
sized to the env's episode length), a fresh run's params from ``DIR``'s weights (:func:`jr.load_pretrained`),
and, when ``DIR`` holds a ``tokenizer.json``, the task runs over that tokenizer with the model's whole
vocabulary as its actions (:func:`jr.with_tokenizer`), its prompts in the tokenizer's chat template when
``model.chat_template`` is True. The tokenizer files are copied into ``<workdir>/tokenizer/`` so
:meth:`Agent.load` rebuilds the same env without ``DIR``.
"""

from __future__ import annotations

import dataclasses
import os
import shutil

from jaxrl_reason.config import PRETRAINED_OVERRIDES, ConfigError
from jaxrl_reason.envs import BPETokenizer, make, with_tokenizer
from jaxrl_reason.envs.bpe import CHAT_TEMPLATE_FILE, TOKENIZER_CONFIG_FILE, TOKENIZER_FILE
from jaxrl_reason.models import TransformerConfig, load_pretrained, pretrained_config
from jaxrl_reason.models.lora import DEFAULT_TARGETS as DEFAULT_LORA_TARGETS
from jaxrl_reason.models.pretrained import CONFIG_FILE

#: where a run keeps a copy of its pretrained tokenizer, under its workdir
TOKENIZER_DIR = "tokenizer"


def pretrained_dir(config) -> str:
    """``model.pretrained`` as a path ("" when off); raises ConfigError when it is not a model directory."""
    path = os.path.expanduser(config.model.get("pretrained", ""))
    if path and not os.path.isfile(os.path.join(path, CONFIG_FILE)):
        raise ConfigError(
            f"model.pretrained={path!r}: expected a Hugging Face model directory with {CONFIG_FILE} (and "
            "model.safetensors, optionally tokenizer.json)"
        )
    return path


def _options(config) -> dict:
    return {k: v for k, v in dict(config.model.overrides).items() if k in PRETRAINED_OVERRIDES}


#: :func:`chat_options` of a run without a chat template
NO_CHAT = {"chat": False, "system": None}


def chat_options(config) -> dict:
    """``with_tokenizer``'s ``chat``/``system`` from ``model.chat_template``/``model.system_prompt`` (absent
    from the configs of runs saved before they existed: no chat)."""
    chat = bool(config.model.get("chat_template", False))
    system = config.model.get("system_prompt", "") or None
    return {"chat": True, "system": system} if chat else dict(NO_CHAT)


def over_tokenizer(env, tokenizer, num_actions: int, *, chat: bool = False, system: str | None = None):
    """`env` itself when `tokenizer` is None, else the env over it with `num_actions` actions (its prompts in
    the tokenizer's chat template when `chat`, after the system message `system` if given)."""
    if tokenizer is None:
        return env
    return with_tokenizer(env, tokenizer, num_actions=num_actions, chat=chat, system=system)


def make_run_env(config):
    """The env of a run: ``make(env_id, **env_kwargs)``, over ``model.pretrained``'s tokenizer if it has one."""
    env = make(config.env_id, **dict(config.env_kwargs))
    path = pretrained_dir(config)
    if not path:
        return env
    vocab = pretrained_config(path).num_actions
    chat = chat_options(config)
    if not os.path.isfile(os.path.join(path, TOKENIZER_FILE)):
        if chat["chat"]:
            raise ConfigError(
                f"model.chat_template=True: model.pretrained={path!r} has no {TOKENIZER_FILE} (the chat template "
                "formats prompts over the model's tokenizer)"
            )
        if env.spec.num_actions != vocab:
            raise ConfigError(
                f"model.pretrained={path!r} has a vocabulary of {vocab} tokens and no {TOKENIZER_FILE}, but "
                f"{env.spec.env_id} has {env.spec.num_actions} actions: add the model's {TOKENIZER_FILE}"
            )
        return env
    tokenizer = BPETokenizer.from_pretrained(path)
    if chat["chat"] and tokenizer.chat_template is None:
        raise ConfigError(
            f"model.chat_template=True: the tokenizer of model.pretrained={path!r} has no chat template (expected "
            f"a 'chat_template' in {TOKENIZER_CONFIG_FILE} or a {CHAT_TEMPLATE_FILE})"
        )
    return over_tokenizer(env, tokenizer, vocab, **chat)


def model_config(config, env) -> TransformerConfig:
    """The run's model config: ``model.pretrained``'s (sized to the env's episodes) or the preset's, with the
    ``model.lora_*`` adapters."""
    path = pretrained_dir(config)
    m = config.model
    lora = dict(lora_rank=m.get("lora_rank", 0), lora_alpha=m.get("lora_alpha", 16.0))
    lora["lora_targets"] = tuple(m.get("lora_targets", DEFAULT_LORA_TARGETS))
    if path:
        return dataclasses.replace(pretrained_config(path, max_length=env.spec.max_length, **_options(config)), **lora)
    return TransformerConfig.for_env(env.spec, m.preset, **{**lora, **dict(m.overrides)})


def pretrained_params(config, env, *, mesh=None):
    """``model.pretrained``'s params (laid out on `mesh`), the value head drawn from ``config.seed`` if new."""
    path = pretrained_dir(config)
    _, params = load_pretrained(path, max_length=env.spec.max_length, mesh=mesh, seed=config.seed, **_options(config))
    return params


def save_tokenizer(config, workdir: str) -> None:
    """Copies ``model.pretrained``'s tokenizer files (if any) into ``<workdir>/tokenizer/``."""
    path = pretrained_dir(config)
    if not path or not os.path.isfile(os.path.join(path, TOKENIZER_FILE)):
        return
    os.makedirs(os.path.join(workdir, TOKENIZER_DIR), exist_ok=True)
    for name in (TOKENIZER_FILE, TOKENIZER_CONFIG_FILE, CHAT_TEMPLATE_FILE):
        if os.path.isfile(os.path.join(path, name)):
            shutil.copyfile(os.path.join(path, name), os.path.join(workdir, TOKENIZER_DIR, name))


def saved_tokenizer(workdir: str) -> BPETokenizer | None:
    """The tokenizer a run saved with :func:`save_tokenizer`, or None (a run over its task's characters)."""
    path = os.path.join(workdir, TOKENIZER_DIR)
    return BPETokenizer.from_pretrained(path) if os.path.isfile(os.path.join(path, TOKENIZER_FILE)) else None


def _identity(tokenizer: BPETokenizer, chat: bool) -> tuple:
    forms = (tokenizer.pad, tokenizer.bos, tokenizer.eos, tokenizer.answer_marker)
    return (tokenizer.backend.to_str(), forms, tokenizer.chat_template if chat else None)


def check_saved_tokenizer(workdir: str, env) -> None:
    """Raises ConfigError when a resumed run's env is over another tokenizer than the one it saved (its
    vocabulary or special tokens changed in ``model.pretrained``, or its chat template when the run uses it; a
    run without chat ignores the template, e.g. a ``chat_template.jinja`` the workdirs of older versions lack)."""
    saved, current = saved_tokenizer(workdir), getattr(env, "tokenizer", None)
    chat = bool(getattr(env, "chat", False))
    if saved is not None and isinstance(current, BPETokenizer) and _identity(saved, chat) != _identity(current, chat):
        raise ConfigError(
            f"workdir {workdir!r} holds a run over another tokenizer than model.pretrained's ({saved!r} in "
            f"{os.path.join(workdir, TOKENIZER_DIR)}, now {current!r}: its vocabulary, special tokens or chat "
            "template changed); resume with the run's own tokenizer or use a new workdir"
        )
