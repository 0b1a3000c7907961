"""The options of a token search, as one frozen value (mctx style): built once, passed everywhere.

Self-play, ``Agent.act``, held-out evaluation and the arena all take a :class:`SearchConfig` instead of
threading the same loose keywords through each call. It is hashable, so it also keys compile caches.
"""

from __future__ import annotations

import dataclasses
from typing import Any

ALGORITHMS = ("gumbel", "muzero")
EVALUATIONS = ("kv", "window", "full")


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """Options of :func:`jaxrl_reason.mcts_policy` (see there for what each does).

    num_simulations: simulations per search (>= 1). top_k: K candidate tokens per node (>= 1).
    algorithm: ``"gumbel"`` (``mctx.gumbel_muzero_policy``) or ``"muzero"`` (PUCT). max_depth: the
    deepest node is this many tokens below the root. evaluation: ``"kv"``, ``"window"`` or ``"full"``.
    store_states: keep states in the tree (None: by size). rescale_values: mctx's min-max Q rescaling.
    rollouts / rollout_weight: random playouts mixed into each leaf's value. use_reward: the env's rewards
    (its verifier) inside the tree; False: the tree sees no reward and a finished response is judged by the
    value head, as test-time search must on tasks whose reward compares with a stored answer
    (``env.spec.reward_needs_answer``). The rest go to mctx.
    """

    num_simulations: int = 32
    top_k: int = 16
    algorithm: str = "gumbel"
    max_depth: int = 6
    evaluation: str = "kv"
    store_states: bool | None = None
    max_num_considered_actions: int = 16
    gumbel_scale: float = 1.0
    dirichlet_fraction: float = 0.25
    dirichlet_alpha: float = 0.3
    pb_c_init: float = 1.25
    pb_c_base: float = 19652.0
    temperature: float = 1.0
    rescale_values: bool = True
    rollouts: int = 0
    rollout_weight: float = 0.5
    use_reward: bool = True

    def __post_init__(self):
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.evaluation not in EVALUATIONS:
            raise ValueError(f"evaluation must be one of {EVALUATIONS}, got {self.evaluation!r}")
        if int(self.rollouts) < 0 or not 0.0 <= float(self.rollout_weight) <= 1.0:
            raise ValueError(
                f"rollouts must be >= 0 and rollout_weight in [0, 1], got {self.rollouts}, {self.rollout_weight}"
            )
        if int(self.num_simulations) < 1 or int(self.max_depth) < 1 or int(self.top_k) < 1:
            raise ValueError(
                f"num_simulations, max_depth and top_k must be >= 1, got {self.num_simulations}, "
                f"{self.max_depth}, {self.top_k}"
            )
        if int(self.rollouts) > 0 and not self.use_reward:
            raise ValueError("rollouts are scored by the env's reward: they need use_reward=True")
        if float(self.gumbel_scale) < 0 or float(self.temperature) < 0:
            raise ValueError(f"gumbel_scale and temperature must be >= 0, got {self.gumbel_scale}, {self.temperature}")

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with `changes` (validated); unknown names raise TypeError naming the fields."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"unknown search option(s) {sorted(unknown)}; options: {search_option_names()}")
        return dataclasses.replace(self, **changes)


def search_option_names() -> list[str]:
    return [f.name for f in dataclasses.fields(SearchConfig)]


def search_config_from(config, section: str = "selfplay", **overrides: Any) -> SearchConfig:
    """The :class:`SearchConfig` of a run config's ``selfplay`` section (the keys it shares with the
    search: ``num_simulations``, ``top_k``, ``max_depth``, ``rescale_values``, ``rollouts``,
    ``rollout_weight``; ``search`` is the algorithm), then `overrides`."""
    sec = config[section]
    names = set(search_option_names())
    options = {k: sec[k] for k in sec if k in names and k != "temperature"}  # selfplay.temperature is for acting
    if "search" in sec:
        options["algorithm"] = sec["search"]
    return SearchConfig(**options).replace(**overrides)


def verifier_allowed(env, use_reward: bool | None = None) -> bool:
    """Whether test-time search may read `env`'s (a TokenEnv) reward: ``use_reward`` as asked (None: whenever
    allowed).
    Raises ValueError when asked on a task whose reward compares with a stored answer."""
    needs_answer = bool(getattr(env.spec, "reward_needs_answer", True))
    if use_reward is None:
        return not needs_answer
    if use_reward and needs_answer:
        raise ValueError(
            f"{env.spec.env_id}'s reward compares with the stored answer: test-time search must not read it "
            "(use_reward=False; finished responses are then judged by the value head)"
        )
    return bool(use_reward)
