"""Env and verifier benchmarks; prints one JSON object (command, machine, versions, results).

For every registered env id that imports: env steps/s of ``jit(vmap(step))`` at a fixed batch with
random legal actions (``lax.scan`` over steps, finished episodes re-initialized in place, timed after
compile with ``block_until_ready``). For the reasoning tasks also: ``jit(vmap(verify))`` throughput
(responses/s); agreement on a fuzz set of UNTRIMMED responses (random token strings, near-miss edits
of demonstrations, and long responses that reach or pass the response window) played token by token
through ``env.step`` (a jitted ``lax.scan`` over a batch) against ``score_text`` of the response each
episode holds; and demonstrations scoring 1 by ``score_text``, ``verify`` and ``env.step``. Last, the
overhead of running host scorers under a time limit (in a worker process).

    python bench/envs.py                      # batch 1024, 10,000 fuzzed responses per task
    python bench/envs.py --fuzz 1000 --demos 100 --ids countdown-v0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrl_reason as jr
from jaxrl_reason.envs.tasks import _fuzz


def _timed(fn, *args, repeats: int):
    out = jax.block_until_ready(fn(*args))  # compile
    t = time.perf_counter()
    for _ in range(repeats):
        out = jax.block_until_ready(fn(*args))
    return (time.perf_counter() - t) / repeats, out


def bench_steps(env, batch: int, steps: int, repeats: int) -> dict:
    def rollout(key):
        state = jax.vmap(env.init)(jax.random.split(key, batch))

        def body(carry, key):
            state, ended, reward = carry
            k_act, k_reset = jax.random.split(key)
            logits = jnp.where(state.legal_action_mask, 0.0, -jnp.inf)
            actions = jax.random.categorical(k_act, logits).astype(jnp.int32)
            state = jax.vmap(env.step)(state, actions)
            ended = ended + state.done.sum()
            reward = reward + state.rewards.sum()  # consumed, so XLA cannot drop the verifier as dead code
            fresh = jax.vmap(env.init)(jax.random.split(k_reset, batch))
            state = jax.tree.map(
                lambda a, b: jnp.where(state.done.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), fresh, state
            )
            return (state, ended, reward), None

        init = (state, jnp.int32(0), jnp.float32(0))
        (state, ended, reward), _ = jax.lax.scan(body, init, jax.random.split(key, steps))
        return ended, reward, state.tokens.sum()

    fn = jax.jit(rollout)
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.PRNGKey(0)))
    compile_s = time.perf_counter() - t0
    sec, (ended, reward, _) = _timed(fn, jax.random.PRNGKey(1), repeats=repeats)
    return {
        "batch": batch,
        "steps": steps,
        "steps_per_s": round(batch * steps / sec),
        "episodes_ended": int(ended),
        "reward_sum": float(reward),
        "compile_s": round(compile_s, 2),
        "note": "each step includes the random action draw and an auto-reset init",
    }


def bench_verify(env, batch: int, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(2), batch))
    tok, size = env.tokenizer, env.max_response_length
    tokens = np.asarray(states.tokens).copy()
    plen = np.asarray(states.prompt_length)
    texts = _fuzz.random_responses(env, rng, batch)
    lengths = plen.copy()
    for r, t in enumerate(texts):
        ids = tok.encode(t)[:size]
        tokens[r, plen[r] : plen[r] + len(ids)] = ids
        lengths[r] += len(ids)
    fn = jax.jit(jax.vmap(env.verify))
    args = (states.problem, jnp.asarray(tokens), states.prompt_length, jnp.asarray(lengths))
    sec, _ = _timed(fn, *args, repeats=repeats)
    return {"batch": batch, "responses_per_s": round(batch / sec)}


def _fuzz_set(env, dicts, num_fuzz: int, rng) -> tuple[list, list]:
    """Per problem: a quarter random strings, a quarter near misses, half long responses (untrimmed)."""
    per = -(-num_fuzz // len(dicts))
    probs, texts = [], []
    for d in dicts:
        q = per // 4
        texts += (
            _fuzz.random_responses(env, rng, q)
            + _fuzz.near_misses(env, d, rng, q)
            + _fuzz.long_responses(env, d, rng, per - 2 * q)
        )
        probs += [d] * per
    return probs, texts


def check_agreement(env, num_fuzz: int, num_demos: int) -> dict:
    rng = np.random.default_rng(0)
    num_problems = max(num_demos, 1)
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.PRNGKey(3), num_problems))
    problems = jax.tree.map(np.asarray, states.problem)
    dicts = [env.problem_to_dict(jax.tree.map(lambda x, i=i: x[i], problems)) for i in range(num_problems)]
    t = time.perf_counter()
    demos = [env.demonstration(d) for d in dicts[:num_demos]]
    demo_s = time.perf_counter() - t
    probs, texts = _fuzz_set(env, dicts, num_fuzz, rng)
    t = time.perf_counter()
    played = _fuzz.play_responses(env, probs, texts, batch=1024)
    play_s = time.perf_counter() - t
    demo_rewards, demo_scores, _ = _fuzz.verify_texts(env, dicts[:num_demos], demos, batch=1024)
    demo_played = _fuzz.play_responses(env, dicts[:num_demos], demos, batch=1024).rewards
    lengths = [len(env.tokenizer.encode(x)) + 1 for x in demos]
    return {
        "fuzz_responses": len(texts),
        "fuzz_disagreements": int(np.sum(played.rewards != played.scores)),
        "fuzz_longer_than_window": int(np.sum(played.num_tokens > env.max_response_length)),
        "fuzz_truncated_at_window": int(played.truncated.sum()),
        "fuzz_not_ended": int(np.sum(~played.done)),
        "fuzz_held_not_prefix": sum(not t.startswith(r) for t, r in zip(texts, played.responses, strict=True)),
        "fuzz_correct_fraction": round(float(np.mean(played.scores)), 4),
        "fuzz_play_s": round(play_s, 2),
        "demos": num_demos,
        "demos_not_scoring_1": int(np.sum((demo_rewards != 1) | (demo_scores != 1) | (demo_played != 1))),
        "demo_response_tokens_max": max(lengths, default=0),
        "demo_response_tokens_mean": round(float(np.mean(lengths)), 2) if lengths else 0,
        "max_response_length": env.max_response_length,
        "max_prompt_length": env.spec.max_prompt_length,
        "demonstration_s": round(demo_s, 3),
    }


def bench_host_time_limit(batch: int, repeats: int) -> dict:
    """Cost of the host scorers' time limit: ``jit(vmap(verify))`` of a ``HostVerifiedTask`` with an exact-match
    scorer, in a worker process (``timeout_s=5``) vs in this process (``timeout_s=None``)."""
    tok = jr.ASCII_TOKENIZER
    problems = [{"prompt": f"q{i}", "answer": str(i)} for i in range(batch)]
    out = {}
    for name, timeout_s in (("worker_timeout_5s", 5.0), ("in_process", None)):
        env = jr.HostVerifiedTask(problems, _exact_match, max_response_length=16, timeout_s=timeout_s)
        states = jax.vmap(env.init_from_problem)(jnp.arange(batch, dtype=jnp.int32))
        tokens, plen = np.asarray(states.tokens).copy(), np.asarray(states.prompt_length)
        lengths = plen.copy()
        for r in range(batch):
            ids = tok.encode(tok.answer_marker + str(r))
            tokens[r, plen[r] : plen[r] + len(ids)] = ids
            lengths[r] += len(ids)
        args = (states.problem, jnp.asarray(tokens), states.prompt_length, jnp.asarray(lengths))
        sec, rewards = _timed(jax.jit(jax.vmap(env.verify)), *args, repeats=repeats)
        assert float(rewards.sum()) == batch
        out[name + "_ms"] = round(1e3 * sec, 2)
        env.close()
    out["batch"] = batch
    out["ratio"] = round(out["worker_timeout_5s_ms"] / out["in_process_ms"], 2)
    return out


def _exact_match(problem: dict, text: str) -> float:
    return float(text.split(jr.ASCII_TOKENIZER.answer_marker)[-1] == problem["answer"])


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--fuzz", type=int, default=10_000, help="fuzzed responses per task")
    p.add_argument("--demos", type=int, default=1000, help="demonstrations checked per task")
    p.add_argument("--ids", nargs="*", default=None, help="env ids (default: all registered)")
    args = p.parse_args(argv)
    results = {}
    for env_id in args.ids or jr.registered_envs():
        try:
            env = jr.make(env_id)
        except Exception as e:  # e.g. games live on another branch
            results[env_id] = {"skipped": f"{type(e).__name__}: {e}"}
            continue
        r = {"step": bench_steps(env, args.batch, args.steps, args.repeats)}
        if isinstance(env, jr.ReasoningTask):
            r["verify"] = bench_verify(env, args.batch, args.repeats)
            r["agreement"] = check_agreement(env, args.fuzz, args.demos)
        results[env_id] = r
        print(env_id, json.dumps(r), file=sys.stderr, flush=True)
    results["host_scorer_time_limit"] = bench_host_time_limit(256, max(args.repeats, 10))
    out = {
        "command": " ".join(["python"] + sys.argv),
        "machine": {
            "platform": platform.platform(),
            "processor": _cpu_name(),
            "cpu_count": os.cpu_count(),
            "devices": [str(d) for d in jax.devices()],
        },
        "versions": {
            "python": platform.python_version(),
            "jax": jax.__version__,
            "jaxlib": jax.lib.__version__,
            "numpy": np.__version__,
        },
        "results": results,
    }
    print(json.dumps(out, indent=1))
    return out


if __name__ == "__main__":
    main()
