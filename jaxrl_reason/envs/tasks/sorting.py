"""``sort-v0``: sort a short list of numbers ascending.

Prompt: the numbers comma-separated (``"5,3,9,1"``); answer: the sorted numbers comma-separated,
canonical decimals, no spaces (``"1,3,5,9"``). The demonstration is the answer itself
(``"<ans>1,3,5,9"``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tasks import _text
from jaxrl_reason.envs.tasks.base import ReasoningTask, as_problem_dict_value
from jaxrl_reason.types import Array, PRNGKey, Problem

MAX_NUMBERS = 12
MAX_VALUE = 9999


class Sort(ReasoningTask):
    """Sort ``num_numbers`` integers drawn uniformly from ``[0, max_value]``.

    Problem pytree: ``{"numbers": [K] int32`` (0-padded), ``"count": [] int32}`` with ``K`` the
    largest list length. Difficulty: ``num_numbers`` an int or a ``(min, max)`` range within
    ``[1, 12]`` (default ``(3, 6)``), ``max_value`` in ``[1, 9999]`` (default 99).
    """

    env_id = "sort-v0"
    response_alphabet = _text.DIGITS + ","

    def __init__(
        self,
        *,
        num_numbers: int | tuple[int, int] = (3, 6),
        max_value: int = 99,
        tokenizer=None,
        max_response_length: int | None = None,
    ):
        self.min_numbers, self.max_numbers = _text.check_range("num_numbers", num_numbers, 1, MAX_NUMBERS)
        self.max_value = _text.check_int("max_value", max_value, 1, MAX_VALUE)
        self._width = _text.num_digits(self.max_value)
        # <ans>, the list (numbers and commas), <eos>.
        self.default_max_response_length = self.max_numbers * (self._width + 1) + 1
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length)
        _text.jit_task_hooks(self)

    @property
    def max_prompt_length(self) -> int:
        return 1 + self.max_numbers * (self._width + 1) - 1

    def sample_problem(self, key: PRNGKey) -> Problem:
        count, numbers = _text.uniform_ints(
            key, [(self.min_numbers, self.max_numbers + 1, ()), (0, self.max_value + 1, (self.max_numbers,))]
        )
        return {"numbers": jnp.where(jnp.arange(self.max_numbers) < count, numbers, 0), "count": count}

    def _render_list(self, numbers: Array, count: Array, size: int) -> tuple[Array, Array]:
        tok = self.tokenizer
        ids, lengths = jax.vmap(lambda v: _text.render_int(v, self._width, tok))(numbers)
        return _text.join_spans(ids, lengths, count, _text.const_span(",", tok), size, tok.pad_id)

    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        return self._render_list(problem["numbers"], problem["count"], self.max_prompt_length - 1)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return ",".join(map(str, problem_dict["numbers"]))

    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        live = jnp.arange(self.max_numbers) < problem["count"]
        ordered = jnp.sort(jnp.where(live, problem["numbers"], MAX_VALUE + 1))
        want, n = self._render_list(ordered, problem["count"], self.max_prompt_length - 1)
        return _text.span_equal(answer, answer_length, want, n)

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        return answer == ",".join(map(str, sorted(problem_dict["numbers"])))

    def problem_to_dict(self, problem: Problem) -> dict:
        n = int(problem["count"])
        return {"numbers": as_problem_dict_value(np.asarray(problem["numbers"])[:n])}

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        _text.check_keys("sort", problem_dict, ("numbers",))
        numbers = problem_dict["numbers"]
        if not isinstance(numbers, (list, tuple)) or not 1 <= len(numbers) <= self.max_numbers:
            raise ValueError(f"sort 'numbers' must be a list of 1..{self.max_numbers} ints, got {numbers!r}")
        values = [_text.check_int("sort number", v, 0, self.max_value) for v in numbers]
        padded = np.zeros((self.max_numbers,), np.int32)
        padded[: len(values)] = values
        return {"numbers": jnp.asarray(padded), "count": jnp.int32(len(values))}

    def demonstration(self, problem_dict: dict) -> str:
        self.problem_from_dict(problem_dict)
        return self.tokenizer.answer_marker + ",".join(map(str, sorted(problem_dict["numbers"])))
