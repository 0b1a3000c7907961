"""``multiply-v0``: multiply an n-digit number by an m-digit number (long multiplication).

Prompt ``"{a}*{b}="``; answer: the product in canonical decimal. Demonstration: one partial product per
non-zero digit of ``b`` from the right (the digit times its place value), then their running sum, e.g.
for ``347*25``::

    347*5=1735,347*20=6940,1735+6940=8675,<ans>8675

With the calculator (``jr.make("multiply-v0", tools=("calc",))``), ``tool_demonstration`` is the same
solution with every result written by the tool: the model writes ``[347*5=``, the env ``1735]``::

    [347*5=1735][347*20=6940][1735+6940=8675]<ans>8675

(the tokens after each ``=`` up to ``]`` are the environment's). The same steps, so the two differ only
in who computes.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxrl_reason.envs.tasks import _text
from jaxrl_reason.envs.tasks.base import ReasoningTask, as_problem_dict_value
from jaxrl_reason.types import Array, PRNGKey, Problem

MAX_DIGITS = 4  # a, b < 10**4: the product fits in 8 digits


class Multiplication(ReasoningTask):
    """``a * b`` with ``a`` uniform in ``[0, 10**num_digits)``, ``b`` in ``[0, 10**multiplier_digits)``.

    Problem pytree: ``{"a": [] int32, "b": [] int32}``. Defaults: 3 by 2 digits.
    """

    env_id = "multiply-v0"
    response_alphabet = "0123456789+*=,"

    def __init__(
        self,
        *,
        num_digits: int = 3,
        multiplier_digits: int = 2,
        tokenizer=None,
        max_response_length: int | None = None,
    ):
        self.num_digits = _text.check_int("num_digits", num_digits, 1, MAX_DIGITS)
        self.multiplier_digits = _text.check_int("multiplier_digits", multiplier_digits, 1, MAX_DIGITS)
        n, m = self.num_digits, self.multiplier_digits
        # m partial lines "[a*d0..0=p]" and m-1 sums "[s+p=s']" (numbers of at most n+m digits; the plain
        # demonstration is one token shorter per line), then <ans>, the answer, <eos>.
        self.default_max_response_length = m * (2 * n + 2 * m + 4) + (m - 1) * (3 * (n + m) + 4) + (n + m) + 2
        super().__init__(tokenizer=tokenizer, max_response_length=max_response_length)
        _text.jit_task_hooks(self)

    @property
    def max_prompt_length(self) -> int:
        return 1 + self.num_digits + self.multiplier_digits + 2

    def sample_problem(self, key: PRNGKey) -> Problem:
        a, b = _text.uniform_ints(key, [(0, 10**self.num_digits, ()), (0, 10**self.multiplier_digits, ())])
        return {"a": a, "b": b}

    def _render_prompt(self, problem: Problem) -> tuple[Array, Array]:
        tok = self.tokenizer
        spans = [
            _text.render_int(problem["a"], self.num_digits, tok),
            _text.const_span("*", tok),
            _text.render_int(problem["b"], self.multiplier_digits, tok),
            _text.const_span("=", tok),
        ]
        return _text.pack(spans, self.max_prompt_length - 1, tok.pad_id)

    def _prompt_text_reference(self, problem_dict: dict) -> str:
        return f"{problem_dict['a']}*{problem_dict['b']}="

    def _check_answer(self, problem: Problem, answer: Array, answer_length: Array) -> Array:
        max_digits = self.num_digits + self.multiplier_digits
        value, ok = _text.parse_decimal(answer, answer_length, max_digits, self.tokenizer)
        return ok & (value == problem["a"] * problem["b"])

    def _check_answer_text(self, problem_dict: dict, answer: str) -> bool:
        value = _text.parse_decimal_text(answer, self.num_digits + self.multiplier_digits)
        return value is not None and value == problem_dict["a"] * problem_dict["b"]

    def problem_to_dict(self, problem: Problem) -> dict:
        return {"a": as_problem_dict_value(problem["a"]), "b": as_problem_dict_value(problem["b"])}

    def problem_from_dict(self, problem_dict: dict) -> Problem:
        _text.check_keys("multiply", problem_dict, ("a", "b"))
        a = _text.check_int("multiply 'a'", problem_dict["a"], 0, 10**self.num_digits - 1)
        b = _text.check_int("multiply 'b'", problem_dict["b"], 0, 10**self.multiplier_digits - 1)
        return {"a": jnp.int32(a), "b": jnp.int32(b)}

    def solution_steps(self, problem_dict: dict) -> list[tuple[str, int]]:
        """The long multiplication as ``(call, result)`` pairs: partial products, then running sums."""
        self.problem_from_dict(problem_dict)
        a, b = problem_dict["a"], problem_dict["b"]
        places = [int(d) * 10**i for i, d in enumerate(str(b)[::-1]) if d != "0"] or [0]
        steps = [(f"{a}*{p}", a * p) for p in places]
        total = steps[0][1]
        for _, part in steps[1:]:
            steps.append((f"{total}+{part}", total + part))
            total += part
        return steps

    def demonstration(self, problem_dict: dict) -> str:
        steps = self.solution_steps(problem_dict)
        return "".join(f"{call}={value}," for call, value in steps) + self.tokenizer.answer_marker + str(steps[-1][1])

    def tool_demonstration(self, problem_dict: dict, tools=()) -> str:
        """The same solution with each result written by the ``calc`` tool among `tools` (module docstring);
        the plain demonstration when there is none."""
        calc = next((t for t in tools if t.name == "calc"), None)
        if calc is None:
            return self.demonstration(problem_dict)
        steps = self.solution_steps(problem_dict)
        body = "".join(f"{calc.open}{call}={value}{calc.close}" for call, value in steps)
        return body + self.tokenizer.answer_marker + str(steps[-1][1])
