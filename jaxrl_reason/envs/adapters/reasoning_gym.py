"""reasoning-gym datasets as token envs: ``jr.make("rg/<dataset>-v0", size=..., seed=...)``.

Needs the optional extra ``reasoning`` (``pip install jaxrl_reason[reasoning]``). The env is a
:class:`~jaxrl_reason.envs.adapters.host.HostVerifiedTask` over the entries of
``reasoning_gym.create_dataset(name, size=size, seed=seed, **dataset_kwargs)``: the prompt is the
entry's ``question``; the reward is the dataset's own ``score_answer(answer=..., entry=...)`` on the
text after the (single) answer marker of the response, computed on the host at the end of the episode.

Safety: the scorer is reasoning-gym's code, run on model text, and some scorers parse answers with
sympy (countdown uses ``sympy.parse_expr``, which evaluates Python). So an answer is passed to the
scorer only if every character of it occurs in the dataset's own gold answers (plus digits and
space); any other answer scores 0 without reaching the scorer. For countdown that is digits,
``+-*/()`` and space: no names, quotes or attribute access ever reach ``parse_expr``. You can also
restrict what the model may write at all with ``response_alphabet`` (the env's legal actions). Allowed
characters can still make a scorer compute for minutes (sympy on ``9**9**9``), so every call runs under
``timeout_s`` (default 5 s) and a call past it scores 0 (see :class:`HostVerifiedTask`).
"""

from __future__ import annotations

import re
from typing import Any

from jaxrl_reason.envs.adapters.host import ASCII_ALPHABET, UNICODE_SPECIAL_FORMS, HostVerifiedTask
from jaxrl_reason.envs.tasks.base import extract_answer_text
from jaxrl_reason.envs.tokenizer import Tokenizer

_NAME_RE = re.compile(r"^(?P<name>[A-Za-z0-9_]+?)(?:-v(?P<version>\d+))?$")


def _import_reasoning_gym():
    try:
        import reasoning_gym
    except ImportError as e:
        raise ImportError(
            "rg/ envs need the reasoning-gym package: pip install jaxrl_reason[reasoning] "
            f"(or pip install reasoning-gym); import failed with: {e}"
        ) from None
    return reasoning_gym


class ReasoningGymScorer:
    """``score(entry, response_text)``: the dataset's ``score_answer`` on the text after the marker.

    Returns 0.0 when the response has no single answer marker, when the answer holds a character
    outside `allowed_chars` (it never reaches the dataset's scorer then), or when the scorer raises.
    Without ``partial_credit`` the reward is 1.0 only when the dataset's score is exactly 1.0.
    """

    def __init__(
        self,
        dataset: Any,
        tokenizer: Tokenizer,
        *,
        partial_credit: bool = False,
        allowed_chars: frozenset[str] | None = None,
    ):
        self.dataset, self.tokenizer, self.partial_credit = dataset, tokenizer, bool(partial_credit)
        self.allowed_chars = allowed_chars

    def with_tokenizer(self, tokenizer) -> ReasoningGymScorer:
        """The same scorer reading responses written with `tokenizer` (its answer marker and EOS)."""
        return ReasoningGymScorer(
            self.dataset, tokenizer, partial_credit=self.partial_credit, allowed_chars=self.allowed_chars
        )

    def __call__(self, entry: dict, response_text: str) -> float:
        answer = extract_answer_text(response_text, self.tokenizer)
        if answer is None:
            return 0.0
        if self.allowed_chars is not None and not set(answer) <= self.allowed_chars:
            return 0.0
        try:
            score = float(self.dataset.score_answer(answer=answer, entry=entry))
        except Exception:  # third-party scorer on arbitrary model text: a crash is a wrong answer
            return 0.0
        return score if self.partial_credit else float(score == 1.0)


def make_rg_env(
    rest: str,
    *,
    size: int = 1000,
    seed: int = 0,
    partial_credit: bool = False,
    max_response_length: int | None = None,
    max_prompt_length: int | None = None,
    truncate_prompts: str | None = None,
    response_alphabet: str | None = None,
    timeout_s: float | None = 5.0,
    reward_needs_answer: bool = True,
    **dataset_kwargs: Any,
) -> HostVerifiedTask:
    """Builds ``rg/<name>-v0`` (the registry passes ``rest = "<name>-v0"``).

    Args:
      rest: the dataset name with an optional ``-v0`` suffix, e.g. ``"countdown-v0"``.
      size, seed: passed to ``reasoning_gym.create_dataset`` (the env plays exactly these entries).
      partial_credit: pass the dataset's score through (countdown: 0.05 for a wrong expression that
        uses the right numbers, 0.01 unparsable); default False: 1.0 iff the score is exactly 1.0.
      max_response_length: response buffer (EOS included); default max(64, longest answer + 2), so
        every entry's demonstration fits.
      max_prompt_length, truncate_prompts: see :class:`HostVerifiedTask` (long questions raise a
        ValueError unless truncated).
      response_alphabet: characters the model may write (legal actions); default the whole alphabet.
      timeout_s: time limit of one scoring call (default 5 s; sympy-based scorers can compute for
        minutes on answers such as ``9**9**9``); a call past it scores 0. See :class:`HostVerifiedTask`.
      reward_needs_answer: see :class:`HostVerifiedTask`; default True (reasoning-gym scorers may read
        the entry's stored answer). Declare False only for a dataset whose scorer checks the problem alone.
      **dataset_kwargs: the dataset's own config (e.g. ``min_numbers=3`` for countdown).

    The tokenizer's alphabet is printable ASCII + newline + tab + any other character found in the
    dataset's questions and answers (sorted); its special forms are ``⟨eos⟩``, ``⟨ans⟩``, ...
    """
    m = _NAME_RE.match(rest)
    if not m or (m["version"] is not None and m["version"] != "0"):
        raise ValueError(f"expected 'rg/<dataset>-v0' (e.g. 'rg/countdown-v0'), got 'rg/{rest}'")
    name = m["name"]
    rg = _import_reasoning_gym()
    known = sorted(getattr(rg.factory, "DATASETS", {}))
    if known and name not in known:
        raise ValueError(f"reasoning-gym dataset {name!r} is not registered; available: {', '.join(known)}")
    try:
        dataset = rg.create_dataset(name, size=size, seed=seed, **dataset_kwargs)
    except (TypeError, ValueError, AssertionError) as e:  # reasoning-gym checks its configs with asserts
        raise ValueError(
            f"reasoning-gym dataset {name!r} rejected size={size}, seed={seed}, config {dataset_kwargs}: {e}"
        ) from None
    entries = [dataset[i] for i in range(len(dataset))]
    seen = set().union(*(set(e["question"]) | set(str(e["answer"])) for e in entries))
    extra = "".join(sorted(seen - set(ASCII_ALPHABET)))
    tokenizer = Tokenizer(alphabet=ASCII_ALPHABET + extra, special_forms=UNICODE_SPECIAL_FORMS)
    if max_response_length is None:
        longest_answer = max(len(tokenizer.encode(str(e["answer"]))) for e in entries)
        max_response_length = max(64, longest_answer + 2)
    answer_chars = frozenset().union(*(set(str(e["answer"])) for e in entries)) | frozenset("0123456789 ")
    return HostVerifiedTask(
        entries,
        ReasoningGymScorer(dataset, tokenizer, partial_credit=partial_credit, allowed_chars=answer_chars),
        env_id=f"rg/{name}-v0",
        tokenizer=tokenizer,
        max_response_length=max_response_length,
        prompt_key="question",
        answer_key="answer",
        response_alphabet=response_alphabet,
        max_prompt_length=max_prompt_length,
        truncate_prompts=truncate_prompts,
        timeout_s=timeout_s,
        reward_needs_answer=reward_needs_answer,
    )
