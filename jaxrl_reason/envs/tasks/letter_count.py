"""``letter-count-v0``: how many times does a letter occur in a word?

Prompt ``"{letter}:{word}"`` (e.g. ``"r:strawberry"``); answer: the count in canonical decimal.
Demonstration: each letter of the word followed by the running count, e.g.::

    s0t0r1a1w1b1e1r2r3<ans>3
"""

from __future__ import annotations

import string

import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tasks import _text
from jaxrl_reason.envs.tasks.base import ReasoningTask, as_problem_dict_value
from jaxrl_reason.types import Array, PRNGKey, Problem

LETTERS = string.ascii_lowercase
MAX_WORD_LENGTH = 24
#: Real words (many with repeated letters) mixed into the random strings.
WORDS = (
    "strawberry raspberry blueberry banana mississippi committee bookkeeper balloon coffee letter success "
    "address pepper assessment necessary parallel tomorrow strength programming occurrence possession bubble "
    "giraffe apple cherry hello little puzzle rhythm jazz queue level kayak noon cocoa papaya referee "
    "tennessee senseless engineer barrel hippopotamus abracadabra llama pizza grammar dessert "
    "eleven seventeen millennium accommodate embarrass"
).split()
LIST_FRACTION = 0.3  # share of problems drawn from WORDS (when some fit the length range)


class LetterCount(ReasoningTask):
    """Count a letter in a word of ``min_word_length..max_word_length`` lower-case letters.

    Problem pytree: ``{"word": [max_word_length] int32`` (letter indices 0..25, -1 padded),
    ``"length": [] int32, "letter": [] int32}``. Words are built-in English words (30%, when any
    fits the length range) or random strings in which the asked letter is planted at a random
    rate, so counts above 1 are common. Difficulty: ``min_word_length``/``max_word_length`` in
    ``[1, 24]`` (defaults 3 and 10).
    """

    env_id = "letter-count-v0"
    response_alphabet = LETTERS + _text.DIGITS

    def __init__(
        self,
        *,
        min_word_length: int = 3,
        max_word_length: int = 10,
        tokenizer=None,
        max_response_length: int | None = None,
    ):
        self.min_word_length = _text.check_int("min_word_length", min_word_length, 1, MAX_WORD_LENGTH)
        self.max_word_length = _text.check_int("max_word_length", max_word_length, 1, MAX_WORD_LENGTH)
        if self.min_word_length > self.max_word_length:
            raise ValueError(f"min_word_length {min_word_length} > max_word_length {max_word_length}")
        w = self.max_word_length
        # letter + running count per position, <ans>, the count, <eos>.
        self.default_max_response_length = sum(1 + _text.num_digits(i) for i in range(1, w + 1)) + 2 + len(str(w))
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length)
        words = [x for x in WORDS if self.min_word_length <= len(x) <= w]
        self._words = np.full((max(1, len(words)), w), -1, np.int32)
        for i, x in enumerate(words):
            self._words[i, : len(x)] = [LETTERS.index(c) for c in x]
        self._word_lengths = np.asarray([len(x) for x in words] or [w], np.int32)
        self._list_fraction = LIST_FRACTION if words else 0.0
        _text.jit_task_hooks(self)

    @property
    def max_prompt_length(self) -> int:
        return 1 + 2 + self.max_word_length

    def sample_problem(self, key: PRNGKey) -> Problem:
        w = self.max_word_length
        num_words = self._words.shape[0]
        length, letter, rate, chars, plant, pick, pos, own, use_list = _text.uniform_ints(
            key,
            [
                (self.min_word_length, w + 1, ()),
                (0, 26, ()),
                (0, 3, ()),  # planting rate 0, 0.2 or 0.4
                (0, 26, (w,)),
                (0, 5, (w,)),
                (0, num_words, ()),
                (0, 2**20, ()),
                (0, 5, ()),  # 4 in 5: ask for one of the list word's own letters
                (0, 10, ()),  # 3 in 10: a list word (when LIST_FRACTION = 0.3)
            ],
        )
        # A random string with the asked letter planted at a rate in {0, 0.2, 0.4}.
        chars = jnp.where(plant < rate, letter, chars)
        # Or a built-in word, asking (80%) for one of its own letters.
        list_word, list_len = jnp.asarray(self._words)[pick], jnp.asarray(self._word_lengths)[pick]
        list_letter = jnp.where(own < 4, list_word[pos % list_len], letter)
        use_list = use_list < round(10 * self._list_fraction)
        length = jnp.where(use_list, list_len, length)
        word = jnp.where(use_list, list_word, chars)
        word = jnp.where(jnp.arange(w) < length, word, -1)
        letter = jnp.where(use_list, list_letter, letter)
        return {"word": word, "length": length, "letter": letter}

    def _letter_ids(self) -> Array:
        return jnp.asarray(self.tokenizer.ids_of(LETTERS))

    def _count(self, problem: Problem) -> Array:
        live = jnp.arange(self.max_word_length) < problem["length"]
        return jnp.sum(live & (problem["word"] == problem["letter"])).astype(jnp.int32)

    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        tok, letters = self.tokenizer, self._letter_ids()
        word_ids = letters[jnp.clip(problem["word"], 0, 25)]
        letter = (letters[problem["letter"]][None], jnp.int32(1))
        spans = [letter, _text.const_span(":", tok), (word_ids, problem["length"])]
        return _text.pack(spans, self.max_prompt_length - 1, tok.pad_id)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return f"{problem_dict['letter']}:{problem_dict['word']}"

    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        max_digits = _text.num_digits(self.max_word_length)
        value, ok = _text.parse_decimal(answer, answer_length, max_digits, self.tokenizer)
        return ok & (value == self._count(problem))

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        value = _text.parse_decimal_text(answer, _text.num_digits(self.max_word_length))
        return value is not None and value == problem_dict["word"].count(problem_dict["letter"])

    def problem_to_dict(self, problem: Problem) -> dict:
        n = int(problem["length"])
        word = "".join(LETTERS[int(c)] for c in np.asarray(problem["word"])[:n])
        return {"word": word, "letter": LETTERS[as_problem_dict_value(problem["letter"])]}

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        _text.check_keys("letter-count", problem_dict, ("word", "letter"))
        word, letter = problem_dict["word"], problem_dict["letter"]
        w = self.max_word_length
        if not isinstance(word, str) or not 1 <= len(word) <= w or any(c not in LETTERS for c in word):
            raise ValueError(f"letter-count 'word' must be 1..{w} lower-case letters a-z, got {word!r}")
        if not isinstance(letter, str) or len(letter) != 1 or letter not in LETTERS:
            raise ValueError(f"letter-count 'letter' must be one lower-case letter a-z, got {letter!r}")
        ids = np.full((w,), -1, np.int32)
        ids[: len(word)] = [LETTERS.index(c) for c in word]
        return {"word": jnp.asarray(ids), "length": jnp.int32(len(word)), "letter": jnp.int32(LETTERS.index(letter))}

    def demonstration(self, problem_dict: dict) -> str:
        self.problem_from_dict(problem_dict)
        word, letter = problem_dict["word"], problem_dict["letter"]
        steps, count = [], 0
        for c in word:
            count += c == letter
            steps.append(f"{c}{count}")
        return "".join(steps) + self.tokenizer.answer_marker + str(count)
