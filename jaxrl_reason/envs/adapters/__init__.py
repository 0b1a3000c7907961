"""Adapters: outside verifiers (any Python scorer, reasoning-gym) as token envs; tasks over a pretrained vocabulary."""

from jaxrl_reason.envs.adapters.host import ASCII_TOKENIZER, HostVerifiedTask
from jaxrl_reason.envs.adapters.retokenized import RetokenizedTask, with_tokenizer

__all__ = ["ASCII_TOKENIZER", "HostVerifiedTask", "RetokenizedTask", "with_tokenizer"]
