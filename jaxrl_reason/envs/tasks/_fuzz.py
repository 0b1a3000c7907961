"""Agreement checks of the reasoning tasks (used by tests and bench/envs.py, not by training).

``play_responses`` is the reference harness: it feeds UNTRIMMED responses token by token through
``env.step`` (one jitted ``lax.scan`` over a batch), so an episode ends where the env ends it (EOS or a
full response window), then scores the response the episode holds with the Python reference
``env.score_text``. ``verify_texts`` runs ONE jitted, vmapped ``env.verify`` on responses already cut
to the window. ``random_responses``, ``near_misses`` and ``long_responses`` make fuzz sets.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl_reason.envs.tasks.base import ReasoningTask


@functools.cache
def _jitted(env: ReasoningTask):
    init = jax.jit(jax.vmap(env.init_from_problem))
    verify = jax.jit(jax.vmap(env.verify))

    def play(state, actions):  # actions [B, T]
        def body(s, a):
            s = jax.vmap(env.step)(s, a)
            return s, s.rewards[:, 0]

        final, rewards = jax.lax.scan(body, state, actions.T)
        return rewards.sum(0), final  # a finished episode is frozen with zero reward

    return init, verify, jax.jit(play)


def _stack(trees):
    return jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *trees)


def _prepare(env: ReasoningTask, problem_dicts, texts, batch: int):
    """Batched initial states and the response tokens (cut to the response budget) of each text."""
    tok, size = env.tokenizer, env.max_response_length
    n = len(texts)
    pad = (-n) % batch
    problems = [env.problem_from_dict(d) for d in problem_dicts] + [env.problem_from_dict(problem_dicts[0])] * pad
    ids = [tok.encode(t)[:size] for t in texts] + [[]] * pad
    used = [tok.decode(x) for x in ids[:n]]
    return _stack(problems), ids, used, n


def verify_texts(env: ReasoningTask, problem_dicts, texts, *, batch: int = 256):
    """Rewards of responses by ``verify`` and ``score_text``.

    Texts are cut to ``env.max_response_length`` tokens first (what an episode can hold; use
    :func:`play_responses` for untrimmed ones). Returns ``(jax_rewards [N], python_scores [N], texts_used)``.
    """
    init, verify, _ = _jitted(env)
    problems, ids, used, n = _prepare(env, problem_dicts, texts, batch)
    out = []
    for lo in range(0, len(ids), batch):
        state = init(jax.tree.map(lambda x: x[lo : lo + batch], problems))
        tokens = np.asarray(state.tokens).copy()
        plen = np.asarray(state.prompt_length)
        lengths = plen.copy()
        for r, x in enumerate(ids[lo : lo + batch]):
            tokens[r, plen[r] : plen[r] + len(x)] = x
            lengths[r] += len(x)
        out.append(np.asarray(verify(state.problem, jnp.asarray(tokens), state.prompt_length, jnp.asarray(lengths))))
    rewards = np.concatenate(out)[:n]
    scores = np.asarray([env.score_text(d, t) for d, t in zip(problem_dicts, used, strict=True)])
    return rewards, scores, used


class Played(NamedTuple):
    """What :func:`play_responses` returns, one entry per response."""

    rewards: np.ndarray  # [N] float32: the episode's return from env.step
    scores: np.ndarray  # [N] float: score_text of the response the episode holds
    responses: list  # [N] str: that response, decoded (cut before EOS)
    done: np.ndarray  # [N] bool: the episode ended
    truncated: np.ndarray  # [N] bool: it ended on a full response window (no EOS)
    num_tokens: np.ndarray  # [N] int: tokens of each input text (untrimmed)


def play_responses(env: ReasoningTask, problem_dicts, texts, *, batch: int = 256, width: int | None = None) -> Played:
    """Plays each UNTRIMMED response through ``env.step`` token by token (then EOS) and scores what it holds.

    Every text must encode to at most ``width`` tokens (default ``spec.max_length``, more than any
    episode can hold); tokens after the episode's end change nothing. ``rewards == scores`` is the
    agreement the env guarantees, and each ``responses[i]`` is a prefix of ``texts[i]``.
    """
    init, _, play = _jitted(env)
    tok, width = env.tokenizer, width or env.spec.max_length
    problems, _, _, n = _prepare(env, problem_dicts, texts, batch)
    actions = np.full((n + (-n) % batch, width), tok.eos_id, np.int32)
    num_tokens = np.zeros((n,), np.int64)
    for r, t in enumerate(texts):
        x = tok.encode(t)
        if len(x) > width:
            raise ValueError(f"response {r} has {len(x)} tokens, more than width={width}")
        actions[r, : len(x)], num_tokens[r] = x, len(x)
    rewards, responses, done, truncated = [], [], [], []
    for lo in range(0, actions.shape[0], batch):
        state = init(jax.tree.map(lambda x: x[lo : lo + batch], problems))
        ret, final = play(state, jnp.asarray(actions[lo : lo + batch]))
        final = jax.tree.map(np.asarray, final)
        rewards.append(np.asarray(ret))
        done.append(final.done)
        truncated.append(final.truncated)
        for r in range(final.tokens.shape[0]):
            ids = final.tokens[r, final.prompt_length[r] : final.length[r]]
            responses.append(tok.decode(ids).split(tok.eos, 1)[0])
    responses = responses[:n]
    scores = np.asarray([env.score_text(d, t) for d, t in zip(problem_dicts, responses, strict=True)])
    cut = slice(0, n)
    return Played(
        np.concatenate(rewards)[cut],
        scores,
        responses,
        np.concatenate(done)[cut],
        np.concatenate(truncated)[cut],
        num_tokens,
    )


def play_texts(env: ReasoningTask, problem_dicts, texts, *, batch: int = 256):
    """Return of each response played token by token through ``env.step`` (then EOS).

    Returns ``(rewards [N], done [N])``: the sum of rewards over the episode, and whether it ended.
    """
    played = play_responses(env, problem_dicts, texts, batch=batch)
    return played.rewards, played.done


def random_responses(env: ReasoningTask, rng: np.random.Generator, n: int) -> list[str]:
    """Random token strings over the response alphabet, the answer marker and EOS.

    Half of them have the form ``junk <ans> junk`` with short junk, so that answers get parsed.
    """
    tok = env.tokenizer
    chars = list(env.response_alphabet) + [tok.answer_marker, tok.eos]
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            k = int(rng.integers(0, env.max_response_length + 1))
            out.append("".join(rng.choice(chars, k)))
        else:
            head = "".join(rng.choice(list(env.response_alphabet), int(rng.integers(0, 6))))
            tail = "".join(rng.choice(chars[:-2] if rng.random() < 0.8 else chars, int(rng.integers(0, 10))))
            out.append(head + tok.answer_marker + tail)
    return out


def near_misses(env: ReasoningTask, problem_dict: dict, rng: np.random.Generator, n: int) -> list[str]:
    """Mutations of the demonstration: edits of its answer, doubled/missing markers, junk, EOS games."""
    tok = env.tokenizer
    demo = env.demonstration(problem_dict)
    reasoning, answer = demo.split(tok.answer_marker)
    alphabet = list(env.response_alphabet)
    out = []
    for _ in range(n):
        a = list(answer)
        kind = int(rng.integers(0, 9))
        if kind == 0 and a:  # replace a character
            a[int(rng.integers(len(a)))] = str(rng.choice(alphabet))
        elif kind == 1:  # insert a character
            a.insert(int(rng.integers(len(a) + 1)), str(rng.choice(alphabet)))
        elif kind == 2 and a:  # delete a character
            del a[int(rng.integers(len(a)))]
        elif kind == 3 and len(a) > 1:  # swap two neighbours
            i = int(rng.integers(len(a) - 1))
            a[i], a[i + 1] = a[i + 1], a[i]
        elif kind == 4:  # a leading zero or a sign
            a.insert(0, str(rng.choice(["0", "-", "+", " " if " " in alphabet else "0"])))
        elif kind == 5:  # junk (or EOS then junk, which is ignored)
            junk = "".join(rng.choice(alphabet, int(rng.integers(1, 4))))
            a.append((tok.eos if rng.random() < 0.5 else "") + junk)
        text = "".join(a)
        if kind == 6:
            out.append(reasoning + tok.answer_marker + text + tok.answer_marker + text)
        elif kind == 7:
            out.append(text + reasoning)  # answer without a marker
        elif kind == 8:
            out.append(reasoning + tok.answer_marker + text + text)
        else:
            out.append(reasoning + tok.answer_marker + text)
    return out


def long_responses(env: ReasoningTask, problem_dict: dict, rng: np.random.Generator, n: int) -> list[str]:
    """Responses that reach or pass the end of the response window.

    Half are filler reasoning then the demonstration's answer (or a near miss of it), placed so that
    the marker lands within a few tokens of the window's end, on either side (the answer is cut, or
    the marker falls outside). The others are random strings without EOS, up to the buffer's length.
    """
    tok, size = env.tokenizer, env.max_response_length
    filler_chars = list(env.response_alphabet)
    chars = filler_chars + [tok.answer_marker]
    answers = [
        a.split(tok.answer_marker, 1)[1] for a in near_misses(env, problem_dict, rng, n) if tok.answer_marker in a
    ]
    answers.append(env.demonstration(problem_dict).split(tok.answer_marker, 1)[1])
    out = []
    for _ in range(n):
        if rng.random() < 0.5:
            answer = answers[-1] if rng.random() < 0.5 else str(rng.choice(answers))
            k = len(tok.encode(answer)) if answer else 0
            marker_at = size - k - 4 + int(rng.integers(0, 2 * k + 8))  # 0-based position of the marker
            filler = "".join(rng.choice(filler_chars, max(marker_at, 0)))
            out.append(filler + tok.answer_marker + answer + (tok.eos if rng.random() < 0.5 else ""))
        else:
            k = int(rng.integers(size - 2, env.spec.max_length + 1))
            out.append("".join(rng.choice(chars, k)))
    # No episode holds more than max_length tokens: cut there (the text stays longer than the window).
    return [tok.decode(tok.encode(t)[: env.spec.max_length]) for t in out]
