"""What an RL algorithm is to the training loop, and the table the loop looks it up in.

An algorithm is one module under ``jaxrl_reason/training/`` that provides an :class:`Algorithm`:

* ``buffer(config, spec, *, writes_tokens=False) -> dict``: zeros of what it stores between ``collect`` and
  ``update`` (part of the train state, so a checkpoint taken between them resumes bit for bit);
  ``writes_tokens`` (the env's ``TokenEnv.writes_tokens``) asks for room to mark env-written tokens, which no
  policy loss trains on (only then, so runs on other envs keep their checkpoint layout);
* ``build(ctx) -> (collect, update)``: pure functions of the train state (the loop jits them once):
  ``collect(state) -> (state, metrics)`` generates experience into ``state.buffer`` and
  ``update(state) -> (state, metrics)`` takes one optimizer step (through ``ctx.apply_grads``);
* ``collect_every(config)``: how many updates each collection feeds;
* ``uses_reference(config)``: whether the train state keeps a frozen reference policy (a KL term).

Adding an algorithm: write the module, add one row to :data:`ALGORITHMS`, write a config
(docs/DESIGN.md, "Adding an algorithm").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from jaxrl_reason.training import alphazero, policy_gradient, star, step_search


@dataclasses.dataclass(frozen=True)
class BuildContext:
    """What ``Algorithm.build`` gets: the run's pieces and the shared gradient step."""

    config: Any
    env: Any
    model: Any
    mesh: Any
    apply_grads: Callable  # (state, loss_fn, *, trunk_frozen=None) -> (state, metrics)
    start: int  # the first step of the RL phase (after imitation)
    init: Callable  # key -> EnvState of a training problem, never a held-out one (problems.stream_init)


@dataclasses.dataclass(frozen=True)
class Algorithm:
    name: str
    buffer: Callable[..., dict]  # (config, spec, *, writes_tokens=False) -> dict
    build: Callable[[BuildContext], tuple[Callable, Callable]]
    collect_every: Callable[[Any], int]
    uses_reference: Callable[[Any], bool] = lambda config: False
    own_learning_rate: bool = False  # the RL phase uses rl.learning_rate (training.state.learning_rate_schedule)


ALGORITHMS: dict[str, Algorithm] = {
    "alphazero": Algorithm("alphazero", alphazero.buffer, alphazero.build, lambda c: c.selfplay.updates_per_iteration),
    "grpo": Algorithm(
        "grpo",
        policy_gradient.buffer,
        policy_gradient.build,
        lambda c: c.rl.updates_per_batch,
        policy_gradient.uses_reference,
        own_learning_rate=True,
    ),
    "rloo": Algorithm(
        "rloo",
        policy_gradient.buffer,
        policy_gradient.build,
        lambda c: c.rl.updates_per_batch,
        policy_gradient.uses_reference,
        own_learning_rate=True,
    ),
    "star": Algorithm("star", star.buffer, star.build, lambda c: c.rl.updates_per_batch, own_learning_rate=True),
    "step_search": Algorithm(
        "step_search", star.buffer, step_search.build, lambda c: c.rl.updates_per_batch, own_learning_rate=True
    ),
}


def get_algorithm(config) -> Algorithm | None:
    """The run's algorithm, or None for ``algorithm="none"`` (imitation only)."""
    if config.algorithm == "none":
        return None
    if config.algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {config.algorithm!r}; known: {sorted(ALGORITHMS)} or 'none'")
    return ALGORITHMS[config.algorithm]


def empty_buffer(config, spec, *, writes_tokens: bool = False) -> dict:
    """The buffer of the run's algorithm; imitation-only runs keep AlphaZero's, unused, in older runs' layout
    (whatever the env writes)."""
    algo = get_algorithm(config)
    if algo is None:
        return ALGORITHMS["alphazero"].buffer(config, spec)
    return algo.buffer(config, spec, writes_tokens=writes_tokens)
