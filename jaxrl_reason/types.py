"""Contracts every part of jaxrl_reason agrees on.

Read this module and you know the system: environments are *token MDPs* whose state is an
:class:`EnvState`; an environment describes its static sizes with an :class:`EnvSpec`; searches
return a :class:`SearchOutput`. All states are frozen pytrees (``flax.struct.dataclass``), written
for one example and batched by the caller with ``jax.vmap``.

Shape legend: ``L`` = ``spec.max_length`` (prompt + response buffer), ``A`` = ``spec.num_actions``,
``P`` = ``spec.num_players``, ``B`` = batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import chex
import jax
from flax import struct

Array = jax.Array
PRNGKey = jax.Array
Params = Any  # a pytree of arrays
Problem = Any  # a task's problem: a small pytree of arrays (fixed shapes per env)


@struct.dataclass
class EnvState:
    """State of one token-MDP episode (unbatched; vmap for batches).

    The token of action ``a`` is ``a`` itself: an env's actions are the first ``A`` token ids of its
    vocabulary (reasoning tasks: the whole vocabulary; games: the moves, with special tokens above).
    """

    tokens: Array  # [L] int32: prompt then response, padded with spec.pad_id
    length: Array  # [] int32: number of valid tokens in `tokens`
    prompt_length: Array  # [] int32: the response starts at this index
    current_player: Array  # [] int32: player to move, in [0, P)
    legal_action_mask: Array  # [A] bool: all True at terminal states
    rewards: Array  # [P] float32: reward of the last transition, per player
    terminated: Array  # [] bool: the episode ended (EOS, game over, illegal action)
    truncated: Array  # [] bool: the response hit the length limit (also ends the episode)
    problem: Problem  # the task's problem pytree (games: the opening moves)
    aux: Any = ()  # env-private running state (e.g. a game board); () when tokens say it all

    @property
    def done(self) -> Array:
        """[] bool: the episode is over (terminated or truncated)."""
        return self.terminated | self.truncated


@dataclasses.dataclass(frozen=True)
class EnvSpec:
    """Static description of a token MDP. Hashable, so it can be closed over by jitted code."""

    env_id: str
    num_actions: int  # A: size of the policy head's action space
    vocab_size: int  # token ids the model reads, >= num_actions
    max_length: int  # L: token buffer length (prompt + response)
    max_prompt_length: int  # the longest prompt this env renders
    num_players: int = 1
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int | None = 2  # None for games (they end by their rules)
    illegal_action_penalty: float = 0.0  # reward of the player who makes an illegal move
    # True when the reward compares with a stored answer (test-time search must not use it as a verifier);
    # False when it needs only the problem (countdown's expression check, a game's rules).
    reward_needs_answer: bool = True

    @property
    def max_response_length(self) -> int:
        return self.max_length - self.max_prompt_length


@struct.dataclass
class SearchOutput:
    """What a batched search returns (leading axis B)."""

    action: Array  # [B] int32: the chosen action (a token id)
    action_weights: Array  # [B, A] float32: the improved policy π (sums to 1, 0 on illegal)
    root_value: Array  # [B] float32: the search's value estimate at the root, for the player to move
    search_tree: Any = None  # the underlying mctx tree (top-K layout), for inspection


@struct.dataclass
class StepSearchOutput:
    """What a batched search over reasoning steps returns (leading axis B; C candidates of <= S tokens)."""

    action: Array  # [B] int32: the chosen candidate's slot
    step_tokens: Array  # [B, S] int32: the chosen step's tokens (pad beyond step_length)
    step_length: Array  # [B] int32: tokens in the chosen step
    action_weights: Array  # [B, C] float32: the search policy over the root's candidates (0 on duplicates)
    candidates: Array  # [B, C, S] int32: the root's sampled candidate steps
    candidate_lengths: Array  # [B, C] int32
    candidate_valid: Array  # [B, C] bool: a distinct candidate (False: a duplicate of an earlier slot)
    root_value: Array  # [B] float32: the search's value estimate at the root
    search_tree: Any = None  # the underlying mctx tree (C slots per node), for inspection


@struct.dataclass
class Trajectory:
    """A batch of episodes from a rollout or self-play (leading axis B, then step T).

    Step ``t`` is the ``t``-th action after the prompt: it was chosen in the state whose tokens are
    ``tokens[:prompt_length + t]``, so the model's prediction for it sits at position
    ``prompt_length + t - 1``. ``T`` is ``spec.max_response_length`` (games: ``max_length - 1``).
    """

    tokens: Array  # [B, L] int32: final token buffers (prompt + response)
    prompt_length: Array  # [B] int32
    actions: Array  # [B, T] int32: token ids played (pad where not valid)
    log_probs: Array  # [B, T] float32: log-prob of the action under the behaviour policy (0 if not valid)
    values: Array  # [B, T] float32: the network's value of the state before the action
    rewards: Array  # [B, T, P] float32: reward of each transition, per player
    players: Array  # [B, T] int32: player to move before the action
    valid: Array  # [B, T] bool: the step was taken in a live episode
    final_state: EnvState  # [B] states after the last step
    policy: Any = None  # [B, T, A] float32: search policy π (self-play), else None
    # [B, T] bool: the step's token was written by the environment (a tool's answer: forced, not the policy's
    # choice; losses skip it); None when the env writes nothing (``TokenEnv.written_mask``).
    env_written: Any = None

    @property
    def returns(self) -> Array:
        """[B, P] float32: total reward of each episode, per player."""
        return self.rewards.sum(axis=1)


# Callable aliases (shapes in the docstrings of the functions that take them).
InitFn = Callable[[PRNGKey], EnvState]
StepFn = Callable[[EnvState, Array], EnvState]
VerifyFn = Callable[[Problem, Array, Array, Array], Array]
"""verify(problem, tokens [L], prompt_length [], length []) -> reward [] float32 (pure JAX)."""
HostScorer = Callable[[dict, str], float]
"""score(problem_dict, response_text) -> reward: any Python callable (outside jit or via callback)."""


def assert_env_state(state: EnvState, spec: EnvSpec, *, batch: tuple[int, ...] = ()) -> None:
    """Checks shapes and dtypes of a (possibly batched) state against `spec`."""
    chex.assert_shape(state.tokens, (*batch, spec.max_length))
    chex.assert_shape(state.legal_action_mask, (*batch, spec.num_actions))
    chex.assert_shape(state.rewards, (*batch, spec.num_players))
    for name in ("length", "prompt_length", "current_player", "terminated", "truncated"):
        chex.assert_shape(getattr(state, name), batch)
    chex.assert_type(
        [state.tokens, state.length, state.prompt_length, state.current_player],
        [jax.numpy.int32] * 4,
    )
    chex.assert_type([state.legal_action_mask, state.terminated, state.truncated], [bool] * 3)
    chex.assert_type(state.rewards, jax.numpy.float32)
