"""Adapters: outside verifiers (any Python scorer, reasoning-gym) as token envs."""

from jaxrl_reason.envs.adapters.host import ASCII_TOKENIZER, HostVerifiedTask

__all__ = ["ASCII_TOKENIZER", "HostVerifiedTask"]
