"""``addition-v0``: add two n-digit numbers.

Prompt ``"{a}+{b}="``; answer: the sum in canonical decimal (no sign, spaces or leading zeros).
Demonstration: column sums from the right, carry-in written when it is 1, e.g. for ``57+68``::

    7+8=15,5+6+1=12,<ans>125

``demo_style="drop_final_carry"`` makes the demonstrations those of a flawed teacher who forgets the carry out
of the last column (``7+8=15,5+6+1=12,<ans>25``): right on about half of the problems, wrong on the rest, with
the same reasoning steps. Imitation of that teacher reproduces its flaw; the verifier (which checks the true
sum) is unchanged, so RL can learn what the teacher never showed (the main job, configs/default.py).
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_reason.envs.tasks import _text
from jaxrl_reason.envs.tasks.base import ReasoningTask, as_problem_dict_value
from jaxrl_reason.envs.tasks.step_checks import addition_steps_ok
from jaxrl_reason.types import Array, PRNGKey, Problem

MAX_DIGITS = 8  # the sum has at most 9 digits: int32-safe
DEMO_STYLES = ("exact", "drop_final_carry")


class Addition(ReasoningTask):
    """``a + b`` with ``a, b`` uniform in ``[0, 10**num_digits)``.

    Problem pytree: ``{"a": [] int32, "b": [] int32}``. Difficulty: ``num_digits`` in ``[1, 8]``
    (default 3). ``max_response_length`` defaults to ``10 * num_digits + 3`` (fits every
    demonstration).
    """

    env_id = "addition-v0"
    response_alphabet = "0123456789+=,"

    def __init__(
        self,
        *,
        num_digits: int = 3,
        tokenizer=None,
        max_response_length: int | None = None,
        demo_style: str = "exact",
    ):
        self.num_digits = _text.check_int("num_digits", num_digits, 1, MAX_DIGITS)
        if demo_style not in DEMO_STYLES:
            raise ValueError(f"demo_style must be one of {DEMO_STYLES}, got {demo_style!r}")
        self.demo_style = demo_style
        # Each column "9+9+1=19," is 9 tokens; then <ans>, up to n+1 digits, <eos>.
        self.default_max_response_length = 10 * self.num_digits + 3
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length)
        _text.jit_task_hooks(self)

    @property
    def max_prompt_length(self) -> int:
        return 1 + 2 * self.num_digits + 2

    def sample_problem(self, key: PRNGKey) -> Problem:
        (ab,) = _text.uniform_ints(key, [(0, 10**self.num_digits, (2,))])
        return {"a": ab[0], "b": ab[1]}

    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        tok, n = self.tokenizer, self.num_digits
        spans = [
            _text.render_int(problem["a"], n, tok),
            _text.const_span("+", tok),
            _text.render_int(problem["b"], n, tok),
            _text.const_span("=", tok),
        ]
        return _text.pack(spans, self.max_prompt_length - 1, tok.pad_id)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return f"{problem_dict['a']}+{problem_dict['b']}="

    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        value, ok = _text.parse_decimal(answer, answer_length, self.num_digits + 1, self.tokenizer)
        return ok & (value == problem["a"] + problem["b"])

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        value = _text.parse_decimal_text(answer, self.num_digits + 1)
        return value is not None and value == problem_dict["a"] + problem_dict["b"]

    def problem_to_dict(self, problem: Problem) -> dict:
        return {"a": as_problem_dict_value(problem["a"]), "b": as_problem_dict_value(problem["b"])}

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        _text.check_keys("addition", problem_dict, ("a", "b"))
        hi = 10**self.num_digits - 1
        a = _text.check_int("addition 'a'", problem_dict["a"], 0, hi)
        b = _text.check_int("addition 'b'", problem_dict["b"], 0, hi)
        return {"a": jnp.int32(a), "b": jnp.int32(b)}

    def steps_ok(self, problem_dict: dict, steps: list[str]) -> list[bool]:
        return addition_steps_ok(problem_dict, steps)

    def demonstration(self, problem_dict: dict, style: str | None = None) -> str:
        """The worked solution of ``style`` (default: the env's ``demo_style``; see the module docstring)."""
        style = self.demo_style if style is None else style
        if style not in DEMO_STYLES:
            raise ValueError(f"style must be one of {DEMO_STYLES}, got {style!r}")
        self.problem_from_dict(problem_dict)
        a, b = str(problem_dict["a"])[::-1], str(problem_dict["b"])[::-1]
        steps, carry = [], 0
        for i in range(max(len(a), len(b))):
            da = int(a[i]) if i < len(a) else 0
            db = int(b[i]) if i < len(b) else 0
            s = da + db + carry
            steps.append(f"{da}+{db}" + ("+1" if carry else "") + f"={s},")
            carry = s // 10
        total = problem_dict["a"] + problem_dict["b"]
        if style == "drop_final_carry":
            total %= 10 ** max(len(a), len(b))
        return "".join(steps) + self.tokenizer.answer_marker + str(total)
