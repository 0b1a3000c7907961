"""Host-verifier bridge: any Python scorer supplies the terminal reward of a reasoning token env.

A :class:`HostVerifiedTask` is a one-player reasoning task over a fixed list of problems (Python
dicts holding a prompt text). Its problem pytree is the problem's int32 index; the prompts are
tokenized once into a ``[N, max_prompt_length - 1]`` table, so ``init``/``step`` stay pure JAX. At
the end of an episode ``verify`` hands the decoded response to ``scorer(problem_dict, response_text)``
through :func:`jax.pure_callback` (works under ``jit`` and ``vmap``; the scorer runs on the host, once
per finished episode). ``score_text`` calls the same scorer outside jit, and the two agree exactly (the
reward is cast to float32 in both). Every call runs under a time limit (``timeout_s``, default 5 s) in a
worker process (:mod:`~jaxrl_reason.envs.adapters.timed`): a call past it scores 0.0 and counts in
``num_timeouts``.

``response_text`` is the response as text, cut before its first EOS: reasoning, the answer marker
in its text form, the answer. :func:`~jaxrl_reason.envs.tasks.base.extract_answer_text` gives the
text after the marker. Model text is only ever passed to the scorer as a string: never eval/exec it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.adapters.host_reward import HostReward
from jaxrl_reason.envs.adapters.timed import TimedScorer
from jaxrl_reason.envs.tasks.base import ReasoningTask
from jaxrl_reason.envs.tokenizer import Tokenizer
from jaxrl_reason.types import Array, HostScorer, PRNGKey

#: Printable ASCII (space to ``~``) plus newline and tab.
ASCII_ALPHABET = "".join(chr(c) for c in range(32, 127)) + "\n\t"
#: Special forms that start outside ASCII, so any ASCII text decodes unambiguously.
UNICODE_SPECIAL_FORMS = ("⟨pad⟩", "⟨bos⟩", "⟨eos⟩", "⟨ans⟩")
#: A tokenizer for free text: printable ASCII + newline + tab, special tokens ``⟨eos⟩``, ``⟨ans⟩``, ...
ASCII_TOKENIZER = Tokenizer(alphabet=ASCII_ALPHABET, special_forms=UNICODE_SPECIAL_FORMS)


def _canonical(problem_dict: dict) -> str:
    """A key that survives a JSON round trip (tuples become lists, key order is irrelevant)."""
    return json.dumps(problem_dict, sort_keys=True, default=repr)


class HostVerifiedTask(HostReward, ReasoningTask):
    """A reasoning token env whose reward comes from a Python callable.

    Args:
      problems: the problems, each a dict with the prompt text under ``prompt_key`` (other keys are
        passed on to the scorer untouched). Non-empty.
      scorer: ``score(problem_dict, response_text) -> float``; any Python callable, called with the
        original dict of ``problems``. Exceptions it raises propagate (under jit they abort the
        computation), so a scorer of model text should handle bad input itself. With a ``timeout_s``
        it runs in a worker process (forked, not pickled): it must not call JAX, and state it changes
        stays in the worker.
      env_id: the spec's env id.
      tokenizer: text <-> tokens: a character :class:`Tokenizer` (default :data:`ASCII_TOKENIZER`) or a
        :class:`~jaxrl_reason.envs.bpe.BPETokenizer`. Every prompt must be encodable.
      max_response_length: response buffer in tokens (default 64), EOS included.
      prompt_key: key of the prompt text in each problem dict.
      answer_key: key of a reference answer; if given, ``demonstration(d)`` is
        ``answer_marker + str(d[answer_key])`` (else the env has no ``demonstration`` attribute).
      response_alphabet: characters a response may use (the legal actions besides EOS and the
        answer marker); default: the tokenizer's whole alphabet (printable ASCII for a BPE tokenizer).
      max_prompt_length: prompt buffer in tokens including BOS; default: the longest prompt + 1.
      truncate_prompts: what to do with a prompt longer than ``max_prompt_length - 1`` tokens:
        ``None`` (default) raises ValueError; ``"left"`` keeps its last tokens; ``"right"`` keeps its
        first tokens.
      timeout_s: time limit of one scorer call in seconds (default 5.0); a call past it scores 0.0,
        counts in ``num_timeouts`` and warns. ``None`` calls the scorer in this process, unlimited.
      reward_needs_answer: whether the scorer compares with a stored answer (default True, the safe
        side: test-time search never uses such a reward). Pass False only for a scorer that checks a
        response from the problem alone (e.g. an expression against a target); see ``EnvSpec``.

      num_actions: the action count (default ``tokenizer.vocab_size``); a pretrained model's vocabulary may
        be wider than its tokenizer's, the extra ids are never legal.

    With a pretrained :class:`~jaxrl_reason.envs.bpe.BPETokenizer` the legal actions are the tokens whose
    text uses only ``response_alphabet`` (default printable ASCII + newline + tab), EOS and the answer
    marker (:func:`~jaxrl_reason.envs.vocab.vocab_legal_mask`).

    Shapes: problem = [] int32 index into ``problems``; ``spec.num_actions = num_actions``.
    """

    default_max_response_length = 64

    def __init__(
        self,
        problems: Sequence[dict],
        scorer: HostScorer,
        *,
        env_id: str = "host-v0",
        tokenizer: Tokenizer | None = None,
        max_response_length: int | None = None,
        prompt_key: str = "prompt",
        answer_key: str | None = None,
        response_alphabet: str | None = None,
        max_prompt_length: int | None = None,
        truncate_prompts: str | None = None,
        timeout_s: float | None = 5.0,
        reward_needs_answer: bool = True,
        num_actions: int | None = None,
    ):
        self._args = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        tokenizer = tokenizer or ASCII_TOKENIZER
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length, num_actions=num_actions)
        problems = list(problems)
        if not problems:
            raise ValueError("HostVerifiedTask needs at least one problem, got an empty list")
        if not callable(scorer):
            raise ValueError(f"scorer must be a callable score(problem_dict, response_text) -> float, got {scorer!r}")
        if truncate_prompts not in (None, "left", "right"):
            raise ValueError(f"truncate_prompts must be None, 'left' or 'right', got {truncate_prompts!r}")
        self.env_id = env_id
        self.reward_needs_answer = bool(reward_needs_answer)
        self.problems = problems
        self.scorer = scorer
        self.prompt_key = prompt_key
        self.answer_key = answer_key
        if response_alphabet is None:
            response_alphabet = tokenizer.alphabet if isinstance(tokenizer, Tokenizer) else ASCII_ALPHABET
        self.response_alphabet = response_alphabet
        self._legal_mask  # noqa: B018 (raises now on characters the tokenizer cannot write)

        encoded = []
        for i, d in enumerate(problems):
            if not isinstance(d, dict) or not isinstance(d.get(prompt_key), str):
                raise ValueError(f"problem {i} must be a dict with a str under {prompt_key!r}, got {d!r:.200}")
            try:
                encoded.append(tokenizer.encode(d[prompt_key]))
            except ValueError as e:
                raise ValueError(f"problem {i}: prompt cannot be tokenized: {e}") from None
        longest = max(len(ids) for ids in encoded)
        self._max_prompt_length = 1 + longest if max_prompt_length is None else int(max_prompt_length)
        room = self._max_prompt_length - 1
        if room < 1:
            raise ValueError(f"max_prompt_length must be >= 2 (BOS + 1 token), got {max_prompt_length}")
        table = np.full((len(problems), room), tokenizer.pad_id, np.int32)
        lengths = np.zeros((len(problems),), np.int32)
        for i, ids in enumerate(encoded):
            if len(ids) > room:
                if truncate_prompts is None:
                    raise ValueError(
                        f"problem {i}: prompt encodes to {len(ids)} tokens but max_prompt_length="
                        f"{self._max_prompt_length} leaves room for {room} after BOS; raise max_prompt_length "
                        "or pass truncate_prompts='left' (keep the end) or 'right' (keep the start)"
                    )
                ids = ids[-room:] if truncate_prompts == "left" else ids[:room]
            table[i, : len(ids)] = ids
            lengths[i] = len(ids)
        self._prompt_table, self._prompt_lengths = table, lengths
        self._index = {}
        for i, d in enumerate(problems):
            self._index.setdefault(_canonical(d), i)
        self.timeout_s = timeout_s
        self._timed = None if timeout_s is None else TimedScorer(scorer, problems, timeout_s=timeout_s, name=env_id)

    @property
    def max_prompt_length(self) -> int:
        return self._max_prompt_length

    @property
    def num_problems(self) -> int:
        return len(self.problems)

    @property
    def num_timeouts(self) -> int:
        """Scorer calls that ran past ``timeout_s`` (each scored 0.0) since this env was built."""
        return 0 if self._timed is None else self._timed.timeouts

    def with_tokenizer(self, tokenizer, *, num_actions: int | None = None) -> HostVerifiedTask:
        """The same task over another tokenizer (e.g. a pretrained model's :class:`BPETokenizer`, with
        `num_actions` = the model's vocabulary); a scorer with a ``with_tokenizer`` method is rebuilt with it
        too (it reads the answer marker). A default ``response_alphabet`` becomes the new tokenizer's."""
        args = {**self._args, "tokenizer": tokenizer, "num_actions": num_actions}
        scorer = args["scorer"]
        if hasattr(scorer, "with_tokenizer"):
            args["scorer"] = scorer.with_tokenizer(tokenizer)
        self.close()
        return HostVerifiedTask(**args)

    def close(self) -> None:
        """Stops the scorer's worker process, if any (a later call starts a fresh one)."""
        if self._timed is not None:
            self._timed.close()

    def _score(self, items: list[tuple[Any, str]]) -> np.ndarray:
        """[len(items)] float32: the scorer on ``(problem index or dict, text)`` items, under the limit."""
        if self._timed is not None:
            return self._timed(items)
        rows = [(self.problems[p] if isinstance(p, int) else p, text) for p, text in items]
        return np.asarray([np.float32(self.scorer(d, text)) for d, text in rows], np.float32).reshape(-1)

    # -- problems ----------------------------------------------------------------------------------
    def sample_problem(self, key: PRNGKey) -> Array:
        """A uniformly random problem index: [] int32."""
        return jax.random.randint(key, (), 0, self.num_problems, jnp.int32)

    def problem_to_dict(self, problem: Array) -> dict:
        """A copy of the problem's dict (JSON-able if the given problems are)."""
        return dict(self.problems[int(problem)])

    def problem_from_dict(self, problem_dict: dict) -> Array:
        """The index of a problem dict of this task (compared after a JSON round trip)."""
        i = self._index.get(_canonical(problem_dict)) if isinstance(problem_dict, dict) else None
        if i is None:
            raise ValueError(
                f"{problem_dict!r:.200} is not one of this task's {self.num_problems} problems; a "
                "HostVerifiedTask only plays the problems it was built with"
            )
        return jnp.int32(i)

    # -- prompt ---------------------------------------------------------------------------------------
    def _render_prompt(self, problem: Array) -> tuple[Array, Array]:
        return jnp.asarray(self._prompt_table)[problem], jnp.asarray(self._prompt_lengths)[problem]

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        i = int(self.problem_from_dict(problem_dict))
        return self.tokenizer.decode(self._prompt_table[i, : self._prompt_lengths[i]])

    # -- reward -------------------------------------------------------------------------------------------
    def _host_problem(self, row) -> int:
        return int(row)

    def score_text(self, problem_dict: dict, response_text: str) -> float:
        """The scorer on a response text (cut at EOS), outside jit; 0.0 if the text is not encodable.

        A dict of this task's problems is scored as the stored original (as ``verify`` does)."""
        try:
            self.tokenizer.encode(response_text)
        except ValueError:
            return 0.0
        text = response_text.split(self.tokenizer.eos, 1)[0]
        i = self._index.get(_canonical(problem_dict))
        return float(self._score([(problem_dict if i is None else i, text)])[0])

    def _check_answer(self, problem, answer, answer_length):
        raise NotImplementedError("HostVerifiedTask scores whole responses on the host: see verify()")

    def _check_answer_text(self, problem_dict, answer):
        raise NotImplementedError("HostVerifiedTask scores whole responses on the host: see score_text()")

    @property
    def demonstration(self) -> Callable[[dict], str]:
        """``demonstration(d) = answer_marker + str(d[answer_key])``; absent without ``answer_key``."""
        if self.answer_key is None:
            raise AttributeError("this HostVerifiedTask has no demonstrations (built without answer_key)")
        return functools.partial(_demonstration, self.tokenizer.answer_marker, self.answer_key)

    def __repr__(self):
        return f"HostVerifiedTask({self.env_id}, {self.num_problems} problems)"


def _demonstration(marker: str, key: str, problem_dict: dict[str, Any]) -> str:
    return marker + str(problem_dict[key])
