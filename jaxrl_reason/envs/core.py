"""The token-MDP template: public ``init``/``step`` that enforce the invariants every env obeys.

Subclasses implement ``_init(problem)`` and ``_step(state, action)``; the template guarantees
(pgx-style), for every env and under ``jit(vmap(...))``:

* stepping a finished episode returns it unchanged, with zero rewards;
* an illegal (or out-of-range) action ends the episode; the mover gets
  ``spec.illegal_action_penalty`` and, in two-player games, the opponent its negation;
* the action's token is appended to ``tokens`` and ``length`` grows by one;
* a full token buffer ends the episode (``truncated``) if ``_step`` did not;
* at a terminal state the legal-action mask is all True (so masked softmaxes stay finite).
"""

from __future__ import annotations

import abc
from typing import Any

import jax
import jax.numpy as jnp

from jaxrl_reason.types import Array, EnvSpec, EnvState, PRNGKey, Problem


def tree_select(pred: Array, on_true: Any, on_false: Any) -> Any:
    """Elementwise ``pred ? on_true : on_false`` over two pytrees of the same structure."""
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


class TokenEnv(abc.ABC):
    """Base class of token MDPs. Instances are immutable; methods are pure and unbatched."""

    @property
    @abc.abstractmethod
    def spec(self) -> EnvSpec:
        """Static sizes and ids of this env."""

    # -- what subclasses implement ----------------------------------------------------------------
    @abc.abstractmethod
    def sample_problem(self, key: PRNGKey) -> Problem:
        """A random problem (pure JAX, jittable)."""

    @abc.abstractmethod
    def _init(self, problem: Problem) -> EnvState:
        """Initial state for `problem` (may be terminal, e.g. a finished game position)."""

    @abc.abstractmethod
    def _step(self, state: EnvState, action: Array) -> EnvState:
        """Transition for a legal action of a live episode.

        Receives the state with the action's token already appended (``length`` grown by one) and
        ``rewards`` zeroed; sets rewards, termination, the next player and the legal mask.
        """

    # -- public API ---------------------------------------------------------------------------------
    def init(self, key: PRNGKey) -> EnvState:
        """Initial state of a random problem: ``init_from_problem(sample_problem(key))``."""
        return self.init_from_problem(self.sample_problem(key))

    def init_from_problem(self, problem: Problem) -> EnvState:
        """Initial state for a given problem pytree."""
        return self._terminal_mask(self._init(jax.tree.map(jnp.asarray, problem)))

    def step(self, state: EnvState, action: Array) -> EnvState:
        """Plays `action` (a token id in ``[0, A)``) and returns the next state (pure, unbatched)."""
        spec = self.spec
        state = jax.tree.map(jnp.asarray, state)
        action = jnp.asarray(action, jnp.int32)
        in_range = (action >= 0) & (action < spec.num_actions)
        legal = in_range & state.legal_action_mask[jnp.clip(action, 0, spec.num_actions - 1)]
        safe_action = jnp.where(legal, action, 0)

        pos = jnp.minimum(state.length, spec.max_length - 1)
        appended = state.replace(
            tokens=state.tokens.at[pos].set(jnp.where(state.length < spec.max_length, action, state.tokens[pos])),
            length=jnp.minimum(state.length + 1, spec.max_length),
            rewards=jnp.zeros_like(state.rewards),
        )
        stepped = self._step(appended, safe_action)
        full = (stepped.length >= spec.max_length) & ~stepped.done
        stepped = stepped.replace(truncated=stepped.truncated | full)

        illegal = appended.replace(
            terminated=jnp.ones_like(state.terminated),
            rewards=self._penalty_rewards(state.current_player),
        )
        nxt = tree_select(legal, stepped, illegal)
        frozen = state.replace(rewards=jnp.zeros_like(state.rewards))
        return self._terminal_mask(tree_select(state.done, frozen, nxt))

    def written_mask(self, state: EnvState) -> Array:
        """``[L]`` bool: the tokens of ``state.tokens`` the environment wrote (e.g. a tool's answer), not the
        policy. No policy loss, KL or entropy term is computed on them. Default: none (all False)."""
        return jnp.zeros(jnp.shape(state.tokens), bool)

    @property
    def writes_tokens(self) -> bool:
        """Whether :meth:`written_mask` can be True anywhere (static). Rollouts fill ``Trajectory.env_written``
        and imitation data gets its written mask only then, so envs that write nothing pay nothing. Default:
        True iff the subclass overrides :meth:`written_mask`."""
        return type(self).written_mask is not TokenEnv.written_mask

    # -- helpers --------------------------------------------------------------------------------------
    def _penalty_rewards(self, player: Array) -> Array:
        spec = self.spec
        p = jnp.float32(spec.illegal_action_penalty)
        others = -p if spec.num_players == 2 else jnp.float32(0.0)
        rewards = jnp.full((spec.num_players,), others, jnp.float32)
        return rewards.at[player].set(p)

    @staticmethod
    def _terminal_mask(state: EnvState) -> EnvState:
        mask = state.legal_action_mask | state.done
        return state.replace(legal_action_mask=mask)

    def __repr__(self):
        return f"{type(self).__name__}({self.spec.env_id})"
