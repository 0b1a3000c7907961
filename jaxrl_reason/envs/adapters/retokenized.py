"""A built-in reasoning task over a pretrained model's vocabulary: ``with_tokenizer(env, tokenizer)``.

The built-in tasks render prompts and check answers in JAX over a character alphabet (one token per
character). Over a pretrained BPE vocabulary (:class:`~jaxrl_reason.envs.bpe.BPETokenizer`) a
:class:`RetokenizedTask` keeps the task's problems (the same pytrees, ``sample_problem``, problem dicts and
held-out sets) and changes only the text <-> token side:

* the prompt is the task's prompt text encoded with the BPE tokenizer, on the host
  (:func:`jax.pure_callback`; the task still renders it in JAX, as characters);
* the response is free BPE tokens: legal are the tokens whose text uses only the task's
  ``response_alphabet``, EOS and the answer marker (:func:`~jaxrl_reason.envs.vocab.vocab_legal_mask`);
  ids past the tokenizer's vocabulary (the model's padding rows) are never legal;
* the reward is the host bridge (:class:`~jaxrl_reason.envs.adapters.host_reward.HostReward`): the task's
  Python verifier on the decoded response, so ``verify`` equals ``score_text`` of the decoded response
  on every response by construction;
* demonstrations are the task's, with the BPE answer marker;
* with ``chat=True`` the prompt is a chat: the tokenizer's chat template rendered around the task's prompt
  text as one user message (after an optional system message), with the assistant's turn opened
  (:meth:`~jaxrl_reason.envs.bpe.BPETokenizer.apply_chat_template`); the response is written inside that
  turn and scored as without the template.

A tokenizer without a BOS token (Qwen) opens each episode with its EOS token (the document separator
such models were trained with). Prompts must fit the task's prompt buffer in BPE tokens: a byte-level BPE
never needs more tokens than the prompt has bytes, so ASCII prompts always do. With a chat template the
buffer grows by the template's own tokens (the template rendered around an empty prompt); a prompt that
still does not fit raises a ValueError naming it.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.adapters.host import HostVerifiedTask
from jaxrl_reason.envs.adapters.host_reward import HostReward
from jaxrl_reason.envs.tasks.base import ReasoningTask
from jaxrl_reason.envs.tokenizer import Tokenizer
from jaxrl_reason.types import Array, PRNGKey, Problem


class RetokenizedTask(HostReward, ReasoningTask):
    """`task` (a character-level reasoning task) over `tokenizer`, with `num_actions` actions (default the
    tokenizer's vocabulary; a model's may be wider). See the module docstring.

    `chat`: the prompt is ``tokenizer.apply_chat_template([{"role": "system", "content": system}, {"role":
    "user", "content": <the task's prompt text>}], add_generation_prompt=True)`` (the system message only when
    `system` is given), less a leading BOS form (the episode opens with BOS already).

    Raises:
      ValueError: `task` is not a character-level reasoning task, `num_actions` is below the tokenizer's
        vocabulary, the tokenizer cannot write a character of the task's response alphabet, `chat` with a
        tokenizer without a chat template, or `system` without `chat`.
    """

    def __init__(
        self,
        task: ReasoningTask,
        tokenizer,
        *,
        num_actions: int | None = None,
        chat: bool = False,
        system: str | None = None,
    ):
        if not isinstance(task, ReasoningTask) or not isinstance(task.tokenizer, Tokenizer):
            raise ValueError(f"expected a reasoning task over a character tokenizer, got {task!r}")
        if chat and getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"{task.env_id}: chat=True formats the prompt with the tokenizer's chat template, but {tokenizer!r} "
                "has none: load a tokenizer whose tokenizer_config.json has a 'chat_template' (or a "
                "chat_template.jinja), pass BPETokenizer(..., chat_template=...), or use chat=False"
            )
        if system is not None and not chat:
            raise ValueError(f"{task.env_id}: a system message (system={system!r:.80}) needs chat=True")
        super().__init__(tokenizer=tokenizer, max_response_length=task.max_response_length, num_actions=num_actions)
        self.task = task
        self.env_id = task.env_id
        self.response_alphabet = task.response_alphabet
        self.reward_needs_answer = task.reward_needs_answer
        self.chat = bool(chat)
        self.system = system
        # the template's own tokens, on top of the task's prompt buffer
        self._chat_tokens = len(self.tokenizer.encode(self._chat_text(""))) if self.chat else 0
        self._legal_mask  # noqa: B018 (raises now on characters the tokenizer cannot write)

    @property
    def max_prompt_length(self) -> int:
        return self.task.max_prompt_length + self._chat_tokens

    def _chat_text(self, text: str) -> str:
        """The prompt text the tokenizer encodes: `text`, or with ``chat`` the chat template around it."""
        if not self.chat:
            return text
        messages = [] if self.system is None else [{"role": "system", "content": self.system}]
        chat = self.tokenizer.apply_chat_template([*messages, {"role": "user", "content": text}])
        bos = self.tokenizer.bos
        return chat[len(bos) :] if bos and chat.startswith(bos) else chat  # the episode's first token is BOS

    # -- problems: the task's own -------------------------------------------------------------------
    def sample_problem(self, key: PRNGKey) -> Problem:
        return self.task.sample_problem(key)

    def problem_to_dict(self, problem: Problem) -> dict:
        return self.task.problem_to_dict(problem)

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        return self.task.problem_from_dict(problem_dict)

    def demonstration(self, problem_dict: dict) -> str:
        reasoning, answer = self.task.demonstration(problem_dict).split(self.task.tokenizer.answer_marker)
        return reasoning + self.tokenizer.answer_marker + answer

    # -- prompt: the task's text, BPE-encoded on the host --------------------------------------------
    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        ids, n = self.task._render_prompt(problem)
        room = self.max_prompt_length - 1
        shapes = (jax.ShapeDtypeStruct((room,), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32))
        return jax.pure_callback(self._encode_prompts, shapes, ids, n, vmap_method="broadcast_all")

    def _encode_prompts(self, ids, n) -> tuple[np.ndarray, np.ndarray]:
        ids, n = np.asarray(ids), np.asarray(n)
        room = self.max_prompt_length - 1
        out = np.full((n.size, room), self.tokenizer.pad_id, np.int32)
        lengths = np.zeros((n.size,), np.int32)
        for j, (row, k) in enumerate(zip(ids.reshape(-1, ids.shape[-1]), n.ravel(), strict=True)):
            encoded = self._encode_prompt(self.task.tokenizer.decode(row[: int(k)]))
            out[j, : len(encoded)], lengths[j] = encoded, len(encoded)
        return out.reshape(n.shape + (room,)), lengths.reshape(n.shape)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 (the env lives as long as its runs)
    def _encode_prompt(self, text: str) -> tuple[int, ...]:
        ids = self.tokenizer.encode(self._chat_text(text))
        if len(ids) > self.max_prompt_length - 1:
            raise ValueError(
                f"{self.env_id}: the prompt {text!r} encodes to {len(ids)} BPE tokens, more than the "
                f"{self.max_prompt_length - 1} the task's prompt buffer holds"
            )
        return tuple(ids)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return self._chat_text(self.task._prompt_text_reference(problem_dict))

    # -- reward: the task's Python verifier on the decoded response -----------------------------------
    def _host_problem(self, row) -> dict:
        return self.task.problem_to_dict(row)

    def _score(self, items: list[tuple[Any, str]]) -> np.ndarray:
        return np.asarray([self.score_text(d, text) for d, text in items], np.float32)

    def _check_answer(self, problem, answer, answer_length):
        raise NotImplementedError("a RetokenizedTask scores responses on the host: see verify()")

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        return self.task._check_answer_text(problem_dict, answer)

    def __repr__(self):
        chat = "" if not self.chat else ", chat=True" if self.system is None else ", chat=True, system=..."
        return f"RetokenizedTask({self.env_id}, {self.tokenizer!r}{chat})"


def with_tokenizer(env, tokenizer, *, num_actions: int | None = None, chat: bool = False, system: str | None = None):
    """`env` over a pretrained model's `tokenizer`, with `num_actions` actions (the model's vocabulary).

    A built-in reasoning task becomes a :class:`RetokenizedTask` (`chat`: its prompt in the tokenizer's chat
    template, after the system message `system` if given); a
    :class:`~jaxrl_reason.envs.adapters.host.HostVerifiedTask` (reasoning-gym included) is rebuilt over the
    tokenizer. Raises ValueError for other envs (games play moves, not text), and for `chat` on a
    ``HostVerifiedTask`` (not supported yet).
    """
    if env.writes_tokens:
        raise ValueError(
            f"{env!r} writes tokens (tool calls); tools are not supported over a pretrained tokenizer yet: their "
            "calls and answers are character-level"
        )
    if isinstance(env, HostVerifiedTask):
        if chat or system is not None:
            raise ValueError(
                f"{env!r}: chat templates apply to the built-in tasks only; a HostVerifiedTask's prompts are "
                "used as given (format them with tokenizer.apply_chat_template before building it)"
            )
        return env.with_tokenizer(tokenizer, num_actions=num_actions)
    if isinstance(env, ReasoningTask):
        return RetokenizedTask(env, tokenizer, num_actions=num_actions, chat=chat, system=system)
    raise ValueError(
        f"{env!r} is not a reasoning task: a pretrained tokenizer applies to reasoning tasks (their actions are "
        "text), not to games"
    )
