"""Throughput of the game envs, the host-verifier bridge and the reference players. Prints JSON.

    python -m bench.games_throughput [--batch 1024] [--repeats 3]   # from the repository root

* games: random self-play of whole games, ``jit(init + lax.scan(step))`` over a batch; env steps/s.
* host bridge: the same rollout loop over a HostVerifiedTask whose scorer runs through pure_callback,
  against the same env with the callback replaced by a constant (the callback's cost, as a ratio).
* players: UCT MCTS simulations/s (connect four, empty board) and a cold minimax solve of tic-tac-toe.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

import jaxrl_reason as jr
from bench.players import _ttt_value, mcts_move, ttt_value
from jaxrl_reason.envs.tasks.base import extract_answer_text


def rollout_fn(env, batch: int, steps: int):
    """jit: random legal play of `steps` steps from `batch` fresh states; returns the summed rewards."""

    def run(key):
        k0, k1 = jax.random.split(key)
        states = jax.vmap(env.init)(jax.random.split(k0, batch))

        def body(s, k):
            logits = jnp.where(s.legal_action_mask, 0.0, -jnp.inf)
            a = jax.random.categorical(k, logits).astype(jnp.int32)
            s = jax.vmap(env.step)(s, a)
            return s, s.rewards.sum(0)

        s, r = jax.lax.scan(body, states, jax.random.split(k1, steps))
        return r.sum(0), s.done.all()

    return jax.jit(run)


def timed(fn, *args, repeats: int):
    t0 = time.perf_counter()
    jax.block_until_ready(fn(*args))
    compile_s = time.perf_counter() - t0
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best, compile_s


class _NoCallback(jr.HostVerifiedTask):
    """The same env with the host callback replaced by a constant (baseline for its cost)."""

    def _host_reward(self, problem, tokens, prompt_length, length, active):
        return jnp.float32(0.0)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    key = jax.random.PRNGKey(0)
    out = {
        "command": " ".join(["python -m bench.games_throughput", *sys.argv[1:]]),
        "machine": f"{platform.processor() or platform.machine()}, {jax.devices()[0].device_kind}, "
        f"{len(jax.devices())} device(s)",
        "versions": {"jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "results": {},
    }
    res = out["results"]
    for env_id in ("tic-tac-toe-v0", "connect-four-v0"):
        env = jr.make(env_id)
        steps = env.spec.max_length - 1
        fn = rollout_fn(env, args.batch, steps)
        best, compile_s = timed(fn, key, repeats=args.repeats)
        assert bool(fn(key)[1]), "games did not finish"
        res[env_id] = {
            "batch": args.batch,
            "steps": steps,
            "env_steps_per_s": round(args.batch * steps / best),
            "compile_s": round(compile_s, 2),
        }

    tok = jr.ASCII_TOKENIZER
    problems = [{"prompt": f"What is {i}+{i}?", "answer": str(2 * i)} for i in range(100)]
    scorer = lambda d, text: float(extract_answer_text(text, tok) == d["answer"])
    batch, resp = 256, 32
    times = {}
    for name, cls in (("host_callback", jr.HostVerifiedTask), ("constant_reward", _NoCallback)):
        env = cls(problems, scorer, max_response_length=resp)
        best, compile_s = timed(rollout_fn(env, batch, resp), key, repeats=args.repeats)
        times[name] = best
        res[f"host_bridge/{name}"] = {
            "batch": batch,
            "steps": resp,
            "env_steps_per_s": round(batch * resp / best),
            "compile_s": round(compile_s, 2),
        }
    res["host_bridge/callback_slowdown"] = round(times["host_callback"] / times["constant_reward"], 2)

    # reasoning-gym countdown: long prompts (~380 tokens), the dataset's own scorer (sympy) at the end.
    try:
        rg_env = jr.make("rg/countdown-v0", size=256, seed=0)
    except ImportError:
        rg_env = None
    if rg_env is not None:
        steps = rg_env.max_response_length
        best, compile_s = timed(rollout_fn(rg_env, batch, steps), key, repeats=args.repeats)
        base = _NoCallback(
            rg_env.problems,
            rg_env.scorer,
            tokenizer=rg_env.tokenizer,
            max_response_length=steps,
            prompt_key="question",
        )
        best0, _ = timed(rollout_fn(base, batch, steps), key, repeats=args.repeats)
        res["host_bridge/rg_countdown"] = {
            "batch": batch,
            "steps": steps,
            "prompt_tokens": rg_env.spec.max_prompt_length,
            "env_steps_per_s": round(batch * steps / best),
            "compile_s": round(compile_s, 2),
            "callback_slowdown": round(best / best0, 2),
        }

    t0 = time.perf_counter()
    mcts_move("connect_four", [], num_simulations=2000, seed=0)
    res["players/mcts_c4_sims_per_s"] = round(2000 / (time.perf_counter() - t0))
    _ttt_value.cache_clear()
    t0 = time.perf_counter()
    assert ttt_value([]) == 0
    res["players/ttt_minimax_cold_solve_s"] = round(time.perf_counter() - t0, 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
