"""Verifiable reasoning tasks: the shared machinery of every one-player task.

Layout of an episode's tokens: ``[bos] prompt response``; the response is free tokens that end with
EOS or after ``max_response_length`` tokens, whatever the prompt's length (the episode is truncated at
``prompt_length + max_response_length``, so ``verify``'s window always holds the whole response). By
convention a response is ``reasoning <ans> answer``. The reward at the end is
``verify(problem, tokens, prompt_length, length)``: 1.0 when the response holds **exactly one** answer
marker and the text after it (up to EOS) is a correct answer in the task's canonical form, else 0.0.
The same rule in plain Python is ``score_text(problem_dict, text)``; the two agree exactly on every
response an episode can hold (tested on fuzzed, untrimmed and adversarial sets).

A task subclass supplies, as pairs that must agree:

* ``_render_prompt(problem)`` (JAX)   ~ ``prompt_text(problem_dict)`` via ``_prompt_text_reference``;
* ``_check_answer(problem, answer, n)`` (JAX) ~ ``_check_answer_text(problem_dict, text)`` (Python);

plus ``sample_problem``, ``problem_to_dict``/``problem_from_dict`` and ``demonstration``.
"""

from __future__ import annotations

import abc
import functools
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.core import TokenEnv
from jaxrl_reason.envs.tasks.step_checks import split_steps
from jaxrl_reason.envs.tokenizer import DEFAULT_TOKENIZER, Tokenizer
from jaxrl_reason.envs.vocab import check_num_actions, vocab_legal_mask
from jaxrl_reason.types import Array, EnvSpec, EnvState, Problem


def response_window(tokens: Array, prompt_length: Array, length: Array, size: int, *, eos_id: int, pad_id: int):
    """The response as a left-aligned ``[size]`` window, cut before its first EOS.

    Returns ``(window [size] int32, n [] int32)``: ``window[:n]`` are the response tokens, the rest
    is pad.
    """
    padded = jnp.concatenate([tokens, jnp.full((size,), pad_id, tokens.dtype)])
    window = jax.lax.dynamic_slice(padded, (prompt_length,), (size,))
    idx = jnp.arange(size)
    n = jnp.clip(length - prompt_length, 0, size)
    is_eos = (window == eos_id) & (idx < n)
    n = jnp.where(is_eos.any(), jnp.argmax(is_eos), n).astype(jnp.int32)
    return jnp.where(idx < n, window, pad_id), n


def extract_answer(window: Array, n: Array, *, answer_id: int, pad_id: int):
    """The answer after the single answer marker of a response window.

    Returns ``(answer [size] int32, answer_length [], ok [])``; ``ok`` is False unless the response
    holds exactly one marker. Python twin: :func:`extract_answer_text`.
    """
    size = window.shape[0]
    idx = jnp.arange(size)
    is_marker = (window == answer_id) & (idx < n)
    ok = is_marker.sum() == 1
    start = jnp.argmax(is_marker) + 1
    padded = jnp.concatenate([window, jnp.full((size,), pad_id, window.dtype)])
    answer = jax.lax.dynamic_slice(padded, (start,), (size,))
    answer_length = jnp.where(ok, n - start, 0).astype(jnp.int32)
    return jnp.where(idx < answer_length, answer, pad_id), answer_length, ok


def extract_answer_text(text: str, tokenizer: Tokenizer) -> str | None:
    """Python twin of :func:`extract_answer`: the text after the only marker (before EOS), or None."""
    text = text.split(tokenizer.eos, 1)[0]
    parts = text.split(tokenizer.answer_marker)
    return parts[1] if len(parts) == 2 else None


class ReasoningTask(TokenEnv):
    """A one-player verifiable reasoning task as a token MDP (see module docstring)."""

    env_id: ClassVar[str]
    #: Characters a response may use (besides the answer marker and EOS): the legal actions.
    response_alphabet: ClassVar[str]
    default_max_response_length: ClassVar[int] = 32
    #: Whether the reward compares with a stored answer (see ``EnvSpec.reward_needs_answer``).
    reward_needs_answer: ClassVar[bool] = True

    def __init__(
        self,
        *,
        tokenizer: Tokenizer | None = None,
        max_response_length: int | None = None,
        num_actions: int | None = None,
    ):
        self.tokenizer = tokenizer or DEFAULT_TOKENIZER
        # A model's vocabulary may be wider than its tokenizer's (Qwen pads its embedding table): the extra
        # ids are actions too, never legal ones.
        self.num_actions = check_num_actions(self.tokenizer, num_actions)
        self.max_response_length = int(max_response_length or self.default_max_response_length)
        if self.max_response_length < 2:
            raise ValueError(f"max_response_length must be >= 2, got {self.max_response_length}")

    # -- subclass API -------------------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def max_prompt_length(self) -> int:
        """Longest prompt in tokens, including the leading BOS."""

    @abc.abstractmethod
    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        """Prompt tokens without BOS: ``(ids [max_prompt_length - 1] int32 pad-filled, n [])``."""

    @abc.abstractmethod
    def _prompt_text_reference(self, problem_dict: dict) -> str:
        """Python reference of the prompt text (must equal the decoded ``_render_prompt``)."""

    @abc.abstractmethod
    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        """[] bool: `answer[:answer_length]` is a correct answer in canonical form (pure JAX)."""

    @abc.abstractmethod
    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        """Python twin of ``_check_answer`` (never eval/exec)."""

    @abc.abstractmethod
    def problem_to_dict(self, problem: Problem) -> dict:
        """JSON-able dict of one (unbatched) problem."""

    @abc.abstractmethod
    def problem_from_dict(self, problem_dict: dict) -> Problem:
        """Problem pytree from its dict; raises ValueError on a malformed or out-of-range dict."""

    @abc.abstractmethod
    def demonstration(self, problem_dict: dict) -> str:
        """A correct worked solution: ``reasoning + answer_marker + answer`` (no EOS)."""

    def steps_ok(self, problem_dict: dict, steps: list[str]) -> list[bool]:
        """Per reasoning step (``","``-terminated segments before the answer marker): whether it and every
        step before it are exactly right. Tasks with an exact step checker override this."""
        raise NotImplementedError(f"{type(self).__name__} has no exact step checker (addition and countdown do)")

    @property
    def has_step_checker(self) -> bool:
        """Whether :meth:`steps_ok` is an exact checker of this task's responses (dense process rewards,
        PRM labels)."""
        return type(self).steps_ok is not ReasoningTask.steps_ok

    def step_labels(self, problem_dict: dict, response_text: str) -> list[bool]:
        """Ground-truth correctness of each prefix ending at a step boundary (the steps, then the answer if
        the response has one): a prefix is correct iff every step so far is; the answer step iff the
        verifier also accepts the response. What MC labels and PRMs are measured against."""
        steps, answer = split_steps(response_text, self.tokenizer.answer_marker)
        labels = self.steps_ok(problem_dict, steps)
        if answer is not None:
            prior = labels[-1] if labels else True
            labels.append(prior and self.score_text(problem_dict, response_text) == 1.0)
        return labels

    # -- derived --------------------------------------------------------------------------------------
    @functools.cached_property
    def spec(self) -> EnvSpec:
        tok = self.tokenizer
        return EnvSpec(
            env_id=self.env_id,
            num_actions=self.num_actions,
            vocab_size=self.num_actions,
            max_length=self.max_prompt_length + self.max_response_length,
            max_prompt_length=self.max_prompt_length,
            num_players=1,
            pad_id=tok.pad_id,
            bos_id=tok.eos_id if tok.bos_id is None else tok.bos_id,  # no BOS (Qwen): EOS opens the document
            eos_id=tok.eos_id,
            illegal_action_penalty=0.0,
            reward_needs_answer=bool(self.reward_needs_answer),
        )

    @functools.cached_property
    def _legal_mask(self) -> np.ndarray:
        if not isinstance(self.tokenizer, Tokenizer):  # a pretrained (BPE) vocabulary
            return vocab_legal_mask(self.tokenizer, self.response_alphabet, self.num_actions)
        mask = np.zeros((self.num_actions,), bool)
        mask[self.tokenizer.ids_of(self.response_alphabet)] = True
        mask[[self.tokenizer.eos_id, self.tokenizer.answer_id]] = True
        return mask

    def verify(self, problem: Problem, tokens: Array, prompt_length: Array, length: Array) -> Array:
        """Reward of a response, pure JAX over token arrays: [] float32, 1.0 iff correct.

        Reads ``tokens[prompt_length : min(length, prompt_length + max_response_length)]`` (cut at
        EOS); an episode of this env never holds a longer response.
        """
        tok = self.tokenizer
        window, n = response_window(
            tokens, prompt_length, length, self.max_response_length, eos_id=tok.eos_id, pad_id=tok.pad_id
        )
        answer, answer_length, ok = extract_answer(window, n, answer_id=tok.answer_id, pad_id=tok.pad_id)
        return (ok & self._check_answer(problem, answer, answer_length)).astype(jnp.float32)

    def score_text(self, problem_dict: dict, response_text: str) -> float:
        """Python reference of :meth:`verify` on the response's text (``reasoning <ans> answer``).

        Text after an EOS form is ignored; text the tokenizer cannot encode scores 0.
        """
        try:
            self.tokenizer.encode(response_text)
        except ValueError:
            return 0.0
        answer = extract_answer_text(response_text, self.tokenizer)
        return float(answer is not None and self._check_answer_text(problem_dict, answer))

    def prompt_text(self, problem_dict: dict) -> str:
        """The prompt as text (without BOS), rendered through the JAX path."""
        ids, n = self._render_prompt(self.problem_from_dict(problem_dict))
        return self.tokenizer.decode(np.asarray(ids)[: int(n)])

    def response_text(self, state: EnvState) -> str:
        """Decoded response of one (unbatched) state, without the closing EOS."""
        tokens = np.asarray(state.tokens)[int(state.prompt_length) : int(state.length)]
        text = self.tokenizer.decode(tokens)
        return text.split(self.tokenizer.eos, 1)[0]

    # -- TokenEnv -----------------------------------------------------------------------------------
    def _init(self, problem: Problem) -> EnvState:
        spec = self.spec
        ids, n = self._render_prompt(problem)
        tokens = jnp.full((spec.max_length,), spec.pad_id, jnp.int32).at[0].set(spec.bos_id)
        tokens = jax.lax.dynamic_update_slice(tokens, ids.astype(jnp.int32), (1,))
        length = (1 + n).astype(jnp.int32)
        return EnvState(
            tokens=tokens,
            length=length,
            prompt_length=length,
            current_player=jnp.int32(0),
            legal_action_mask=jnp.asarray(self._legal_mask),
            rewards=jnp.zeros((1,), jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            problem=problem,
        )

    def _ends(self, state: EnvState, action: Array) -> tuple[Array, Array]:
        """``(is_eos, full)`` after `action` was appended: EOS, or the response window is full.

        The window, not the token buffer, bounds the episode: with a short prompt the buffer has room
        past ``prompt_length + max_response_length``, but ``verify`` would not read it.
        """
        is_eos = action == self.spec.eos_id
        full = (state.length - state.prompt_length >= self.max_response_length) | (state.length >= self.spec.max_length)
        return is_eos, full

    def _step(self, state: EnvState, action: Array) -> EnvState:
        is_eos, full = self._ends(state, action)
        done = is_eos | full
        reward = self.verify(state.problem, state.tokens, state.prompt_length, state.length)
        return state.replace(
            rewards=jnp.where(done, reward, 0.0)[None].astype(jnp.float32),
            terminated=is_eos,
            truncated=full & ~is_eos,
        )


def as_problem_dict_value(x: Any) -> Any:
    """numpy/jax scalars and arrays -> plain Python ints/lists (JSON-able)."""
    arr = np.asarray(x)
    return arr.tolist() if arr.ndim else arr.item()
