"""Agreement checks of the built-in tasks (used by tests and bench/envs.py, not by training).

``verify_texts`` runs ONE jitted, vmapped ``env.verify`` over a batch of (problem, response text)
pairs and returns it beside the Python reference ``env.score_text``; ``random_responses`` and
``near_misses`` make fuzz sets; ``play_texts`` feeds responses through ``env.step`` (jitted scan).
"""

from __future__ import annotations

import functools

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
        return rewards.sum(0), final.done  # a finished episode is frozen with zero reward

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
    """Rewards of responses by both paths.

    Texts are cut to ``env.max_response_length`` tokens first (what an episode can hold).
    Returns ``(jax_rewards [N], python_scores [N], texts_used)``.
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


def play_texts(env: ReasoningTask, problem_dicts, texts, *, batch: int = 256):
    """Return of each response played token by token through ``env.step`` (then EOS).

    Returns ``(rewards [N], done [N])``: the sum of rewards over the episode, and whether it ended.
    """
    _, _, play = _jitted(env)
    init = _jitted(env)[0]
    tok, size = env.tokenizer, env.max_response_length
    problems, _, _, n = _prepare(env, problem_dicts, texts, batch)
    actions = np.full((len(texts) + (-n) % batch, size), tok.eos_id, np.int32)
    for r, t in enumerate(texts):
        x = tok.encode(t)[:size]
        actions[r, : len(x)] = x
    rewards, done = [], []
    for lo in range(0, actions.shape[0], batch):
        state = init(jax.tree.map(lambda x: x[lo : lo + batch], problems))
        r, d = play(state, jnp.asarray(actions[lo : lo + batch]))
        rewards.append(np.asarray(r))
        done.append(np.asarray(d))
    return np.concatenate(rewards)[:n], np.concatenate(done)[:n]


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
