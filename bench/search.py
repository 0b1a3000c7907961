"""Benchmark of jr.mcts_policy against the naive ways of searching over tokens. Prints JSON.

    python bench/search.py            # tiny preset, B=256, A=64, L=64, 32 simulations
    python bench/search.py --quick    # smaller, for a smoke run

Measured side by side in one run (simulations/s = B * num_simulations / seconds per search):
  * ours: jr.mcts_policy (top-K=16, prefix-shared evaluation "kv" and "window");
  * (a) naive: mctx over the full vocabulary, a full-prefix forward (model.apply on the whole buffer)
    per simulation, the EnvState in the tree;
  * (b) per-node Python MCTS (PUCT), one node at a time, same network (a jitted [1, L] forward);
  * ours at prompt length 256 vs 32 (cost per simulation should not grow with the prompt);
  * the search tree's memory at vocabularies 32,000 and 151,936, B=64, 64 simulations (jax.eval_shape of the
    search); ``--only vocab``: that and simulations/s at vocabulary 151,936 (tiny model, B=64, 64 simulations);
  * ``--only step``: jr.step_mcts_policy on countdown (3 numbers) against a per-node Python step MCTS (PUCT over
    sampled steps, one node at a time: its C candidates sampled together, one jitted [C, L] forward per token,
    the way published step-search code runs), simulations/s and generated tokens/s.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import functools  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import mctx  # noqa: E402
import numpy as np  # noqa: E402

import jaxrl_reason as jr  # noqa: E402
from jaxrl_reason.envs.core import TokenEnv  # noqa: E402
from jaxrl_reason.search.reference import dense_mcts_policy  # noqa: E402


class RandomTokens(TokenEnv):
    """A synthetic one-player token MDP: a random prompt, then free tokens until EOS or the limit.

    Actions are the whole vocabulary except pad/bos; the reward at the end is 1 if the response's
    token sum is even.
    """

    def __init__(self, *, vocab: int, prompt_length: int, response_length: int):
        self._spec = jr.EnvSpec(
            env_id="random-tokens-v0",
            num_actions=vocab,
            vocab_size=vocab,
            max_length=prompt_length + response_length,
            max_prompt_length=prompt_length,
        )

    @property
    def spec(self):
        return self._spec

    def sample_problem(self, key):
        s = self.spec
        return jax.random.randint(key, (s.max_prompt_length,), 3, s.vocab_size, jnp.int32)

    def _init(self, problem):
        s = self.spec
        tokens = jnp.full((s.max_length,), s.pad_id, jnp.int32).at[: s.max_prompt_length].set(problem)
        tokens = tokens.at[0].set(s.bos_id)
        legal = jnp.arange(s.num_actions) >= 2  # everything but pad and bos
        return jr.EnvState(
            tokens=tokens,
            length=jnp.int32(s.max_prompt_length),
            prompt_length=jnp.int32(s.max_prompt_length),
            current_player=jnp.int32(0),
            legal_action_mask=legal,
            rewards=jnp.zeros((1,), jnp.float32),
            terminated=jnp.bool_(False),
            truncated=jnp.bool_(False),
            problem=problem,
        )

    def _step(self, state, action):
        s = self.spec
        eos = action == s.eos_id
        resp = jnp.where(jnp.arange(s.max_length) >= state.prompt_length, state.tokens, 0)
        full = state.length >= s.max_length
        r = jnp.where((eos | full) & (resp.sum() % 2 == 0), 1.0, 0.0).astype(jnp.float32)
        return state.replace(rewards=r[None], terminated=eos)


def _model(env, num_kv_heads=None):
    return jr.PolicyValueTransformer(jr.TransformerConfig.for_env(env.spec, "tiny", num_kv_heads=num_kv_heads))


def _states(env, batch, key):
    return jax.vmap(env.init)(jax.random.split(key, batch))


def _time(fn, *args, repeats):
    return _time_all({"f": (fn, args)}, repeats=repeats)["f"]


def _time_all(calls, *, repeats):
    """Best seconds per call of each ``name: (fn, args)``, measured round-robin so that the load of
    this shared machine drifts over all of them alike."""
    for fn, args in calls.values():
        jax.block_until_ready(fn(*args))  # compile + warm up
    best = dict.fromkeys(calls, math.inf)
    for _ in range(repeats):
        for name, (fn, args) in calls.items():
            t = time.perf_counter()
            jax.block_until_ready(fn(*args))
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def naive_search(model, params, env, states, key, *, num_simulations, max_depth):
    """(a): plain mctx over all A actions with a full-buffer forward per simulation (the tests' reference)."""
    return dense_mcts_policy(
        model, params, env, states, key, num_simulations=num_simulations, max_depth=max_depth
    ).action_weights


def python_mcts(model, params, env, state, *, num_simulations, c_puct=1.25):
    """(b): textbook per-node PUCT in Python, one network call per node ([1, L] forward)."""
    forward = jax.jit(lambda p, t: model.apply(p, t))
    step = jax.jit(env.step)

    def evaluate(s):
        logits, values = forward(params, s.tokens[None])
        i = int(s.length) - 1
        lg = np.asarray(logits[0, i])
        lg = np.where(np.asarray(s.legal_action_mask), lg, -np.inf)
        p = np.exp(lg - lg.max())
        return p / p.sum(), (0.0 if bool(s.done) else float(values[0, i]))

    nodes = [
        {
            "state": state,
            "prior": evaluate(state)[0],
            "N": np.zeros(env.spec.num_actions),
            "W": np.zeros(env.spec.num_actions),
            "children": {},
        }
    ]
    for _ in range(num_simulations):
        path, node = [], nodes[0]
        while True:
            n = node["N"]
            q = np.where(n > 0, node["W"] / np.maximum(n, 1), 0.0)
            u = c_puct * node["prior"] * math.sqrt(n.sum() + 1) / (1 + n)
            a = int(np.argmax(np.where(node["prior"] > 0, q + u, -np.inf)))
            path.append((node, a))
            if a not in node["children"]:
                break
            node = node["children"][a]
        child_state = step(node["state"], a)
        reward = float(child_state.rewards[0])
        prior, value = evaluate(child_state)
        node["children"][a] = {
            "state": child_state,
            "prior": prior,
            "N": np.zeros_like(node["N"]),
            "W": np.zeros_like(node["W"]),
            "children": {},
        }
        g = reward + value  # one player, rewards only at the end: every edge on the path gets g
        for nd, act in path:
            nd["N"][act] += 1
            nd["W"][act] += g
    return nodes[0]["N"]


def python_step_mcts(model, params, env, state, key, *, num_simulations, num_candidates, max_step_length, c_puct=1.25):
    """Per-node step MCTS in Python (PUCT): expanding a node samples its C steps together, one jitted [C, L]
    forward per token (no KV cache across nodes); prior = the distinct steps' probabilities, leaf = value head,
    a finished response = the verifier's reward. Returns (root visit counts, tokens generated)."""
    forward = jax.jit(lambda p, t: model.apply(p, t))
    step = jax.jit(jax.vmap(env.step))
    ids = np.asarray(jr.search.default_step_ids(env))
    generated = 0

    def expand(s, key):
        nonlocal generated
        rows = jax.tree.map(lambda x: jnp.repeat(x[None], num_candidates, 0), s)
        live, toks, logp = ~np.asarray(rows.done), [], np.zeros(num_candidates)
        for _ in range(max_step_length):
            if not live.any():
                break
            logits, values = forward(params, rows.tokens)
            i = np.asarray(rows.length) - 1
            lg = np.where(np.asarray(rows.legal_action_mask), np.asarray(logits)[np.arange(num_candidates), i], -np.inf)
            key, sub = jax.random.split(key)
            t = np.asarray(jax.random.categorical(sub, jnp.asarray(lg)))
            logp += np.where(live, lg[np.arange(num_candidates), t] - np.logaddexp.reduce(lg, axis=1), 0.0)
            nxt = step(rows, jnp.asarray(np.where(live, t, env.spec.pad_id), jnp.int32))
            rows = jax.tree.map(lambda a, b: jnp.where(live.reshape((-1,) + (1,) * (a.ndim - 1)), a, b), nxt, rows)
            generated += int(live.sum())
            toks.append(np.where(live, t, -1))
            live = live & ~np.isin(t, ids) & ~np.asarray(nxt.done)
        children, seen = {}, set()
        for c in range(num_candidates):
            sig = tuple(int(x[c]) for x in toks if x[c] >= 0)
            if sig not in seen:
                seen.add(sig)
                children[len(children)] = (jax.tree.map(lambda x, c=c: x[c], rows), logp[c])
        p = np.exp(np.array([lp for _, lp in children.values()]))
        return [st for st, _ in children.values()], p / p.sum(), key

    def leaf(s):
        _, values = forward(params, s.tokens[None])
        return float(s.rewards[0]) if bool(s.done) else float(values[0, int(s.length) - 1])

    states, prior, key = expand(state, key)
    root = {"states": states, "prior": prior, "N": np.zeros(len(prior)), "W": np.zeros(len(prior)), "kids": {}}
    for _ in range(num_simulations):
        path, node = [], root
        while True:
            n = node["N"]
            q = np.where(n > 0, node["W"] / np.maximum(n, 1), 0.0)
            a = int(np.argmax(q + c_puct * node["prior"] * math.sqrt(n.sum() + 1) / (1 + n)))
            path.append((node, a))
            if a not in node["kids"]:
                break
            node = node["kids"][a]
        child = node["states"][a]
        g = leaf(child)
        if not bool(child.done):
            states, prior, key = expand(child, key)
            node["kids"][a] = {
                "states": states,
                "prior": prior,
                "N": np.zeros(len(prior)),
                "W": np.zeros(len(prior)),
                "kids": {},
            }
        for nd, act in path:
            nd["N"][act] += 1
            nd["W"][act] += g
    return root["N"], generated


def step_bench(res, model_fn, batch, sims, args, key) -> dict:
    """jr.step_mcts_policy vs python_step_mcts on countdown (3 numbers), the tiny preset."""
    from jaxrl_reason.search.decoding import step_search_cost

    env = jr.make("countdown-v0", num_numbers=3)
    model = model_fn(env)
    params = model.init(key)
    states = _states(env, batch, key)
    cand, size, depth = args.candidates, args.step_length, 3
    kw = dict(num_simulations=sims, num_candidates=cand, max_step_length=size, max_depth=depth)
    fn = jax.jit(functools.partial(jr.step_mcts_policy, model, env=env, **kw))
    out = jax.block_until_ready(fn(params=params, states=states, key=key))
    sampled, evaluated, _ = step_search_cost(out.search_tree, num_candidates=cand, max_step_length=size)
    secs = _time(
        lambda p, s, k: fn(params=p, states=s, key=k).action_weights, params, states, key, repeats=args.repeats
    )
    ours = batch * sims / secs
    tokens = float(np.asarray(sampled + evaluated).sum()) / secs
    py_sims, py_roots = (8, 1) if args.quick else (16, 2)
    one = jax.tree.map(lambda x: x[0], states)
    python_step_mcts(model, params, env, one, key, num_simulations=2, num_candidates=cand, max_step_length=size)
    t, py_tokens = time.perf_counter(), 0
    for i in range(py_roots):
        root = jax.tree.map(lambda x, i=i: x[i], states)
        _, gen = python_step_mcts(model, params, env, root, key, num_simulations=py_sims, num_candidates=cand,
                                  max_step_length=size)  # fmt: skip
        py_tokens += gen
    py_secs = time.perf_counter() - t
    res.update(env="countdown-v0 (3 numbers)", num_candidates=cand, max_step_length=size, max_depth=depth)
    res["step_ours_sims_per_s"] = round(ours, 1)
    res["step_ours_tokens_per_s"] = round(tokens, 1)
    res["step_python_per_node_sims_per_s"] = round(py_roots * py_sims / py_secs, 2)
    res["step_python_per_node_tokens_per_s"] = round(py_tokens / py_secs, 1)
    res["step_speedup_vs_python_sims"] = round(ours / (py_roots * py_sims / py_secs), 1)
    res["step_speedup_vs_python_tokens"] = round(tokens / (py_tokens / py_secs), 1)
    res["targets"] = {"step_speedup_vs_python_sims": ">= 100"}
    return res


def tree_bytes(tree) -> int:
    return int(sum(np.prod(x.shape) * x.dtype.itemsize for x in jax.tree.leaves(tree)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--simulations", type=int, default=32)
    ap.add_argument("--max-depth", type=int, default=6)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--num_kv_heads", type=int, default=None, help="K/V heads (default: the preset's)")
    ap.add_argument(
        "--only",
        choices=("all", "prompt", "step", "vocab"),
        default="all",
        help="prompt: only the prompt-length ratio; vocab: only tree memory and simulations/s at vocabulary 151,936",
    )
    ap.add_argument("--candidates", type=int, default=8, help="step search: candidates per node")
    ap.add_argument("--step-length", type=int, default=12, help="step search: max tokens per step")
    args = ap.parse_args()
    batch, sims, depth = args.batch, args.simulations, args.max_depth
    if args.quick:
        batch, sims = 32, 16
    key = jax.random.key(0)
    res = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {jax.devices()[0].device_kind}",
        "versions": {"jax": jax.__version__, "mctx": mctx.__version__ if hasattr(mctx, "__version__") else "?"},
        "batch": batch,
        "num_simulations": sims,
        "max_depth": depth,
        "top_k": 16,
        "preset": "tiny",
    }
    model_fn = functools.partial(_model, num_kv_heads=args.num_kv_heads)
    if args.only == "step":
        print(json.dumps(step_bench(res, model_fn, batch, sims, args, key), indent=1))
        return
    res["num_kv_heads"] = model_fn(RandomTokens(vocab=64, prompt_length=32, response_length=32)).config.num_kv_heads
    if args.only == "vocab":
        _tree_memory(res, model_fn, depth, key)
        _big_vocab(res, model_fn, depth, args, key)
        print(json.dumps(res, indent=1))
        return
    best = "kv"
    if args.only == "all":
        best = _vs_naive_and_python(res, model_fn, batch, sims, depth, args, key)
    _prompt_ratio(res, model_fn, batch, sims, depth, best, args, key)
    if args.only == "all":
        _tree_memory(res, model_fn, depth, key)
    res["targets"] = {
        "speedup_vs_naive": ">= 10",
        "speedup_vs_python": ">= 50",
        "prompt_256_over_32": ">= 0.7",
        "tree_MiB": "<= 64",
    }
    print(json.dumps(res, indent=1))


def _vs_naive_and_python(res, model_fn, batch, sims, depth, args, key) -> str:

    # -- ours vs (a) at vocabulary 64, length 64 (prompt 32) ----------------------------------------------
    env = RandomTokens(vocab=64, prompt_length=32, response_length=32)
    model = model_fn(env)
    params = model.init(key)
    states = _states(env, batch, key)
    calls = {}
    for ev in ("kv", "window"):
        fn = jax.jit(
            functools.partial(
                jr.mcts_policy, model, env=env, num_simulations=sims, top_k=16, max_depth=depth, evaluation=ev
            )
        )
        calls[ev] = (lambda p, s, k, fn=fn: fn(params=p, states=s, key=k), (params, states, key))
    naive = jax.jit(functools.partial(naive_search, model, env=env, num_simulations=sims, max_depth=depth))
    calls["naive"] = (lambda p, s, k: naive(params=p, states=s, key=k), (params, states, key))
    secs = _time_all(calls, repeats=args.repeats)
    ours = {ev: batch * sims / secs[ev] for ev in ("kv", "window")}
    res["ours_sims_per_s"] = {k: round(v, 1) for k, v in ours.items()}
    best = max(ours, key=ours.get)
    res["ours_best_evaluation"] = best
    naive_rate = batch * sims / secs["naive"]
    res["naive_full_vocab_full_prefix_sims_per_s"] = round(naive_rate, 1)
    res["speedup_vs_naive"] = round(ours[best] / naive_rate, 2)

    # -- (b) per-node Python MCTS: a few roots, reported per simulation ----------------------------------
    py_sims, py_roots = (16, 1) if args.quick else (32, 2)
    one = jax.tree.map(lambda x: x[0], states)
    python_mcts(model, params, env, one, num_simulations=2)  # compile
    t = time.perf_counter()
    for i in range(py_roots):
        python_mcts(model, params, env, jax.tree.map(lambda x, i=i: x[i], states), num_simulations=py_sims)
    py_rate = py_roots * py_sims / (time.perf_counter() - t)
    res["python_per_node_sims_per_s"] = round(py_rate, 1)
    res["speedup_vs_python"] = round(ours[best] / py_rate, 1)
    return best


def _prompt_ratio(res, model_fn, batch, sims, depth, best, args, key) -> None:

    # -- prompt length 256 vs 32: with the prefix's KV cache given (as in a decoding loop, which keeps it
    # up to date one token at a time) and with the prefix encoded inside every search --------------------------
    calls = {}
    for plen in (32, 256):
        env_p = RandomTokens(vocab=64, prompt_length=plen, response_length=32)
        model_p = model_fn(env_p)
        params_p = model_p.init(key)
        states_p = _states(env_p, batch, key)
        cache = jax.jit(model_p.prefill)(params_p, states_p.tokens, states_p.length)[2]
        fn = jax.jit(
            functools.partial(
                jr.mcts_policy, model_p, env=env_p, num_simulations=sims, top_k=16, max_depth=depth, evaluation=best
            )
        )
        calls[(plen, "cache")] = (
            lambda p, s, k, c, fn=fn: fn(params=p, states=s, key=k, cache=c),
            (params_p, states_p, key, cache),
        )
        calls[(plen, "encode")] = (lambda p, s, k, fn=fn: fn(params=p, states=s, key=k), (params_p, states_p, key))
    secs = _time_all(calls, repeats=args.repeats)
    rates = {plen: batch * sims / secs[(plen, "cache")] for plen in (32, 256)}
    rates_enc = {plen: batch * sims / secs[(plen, "encode")] for plen in (32, 256)}
    res["sims_per_s_by_prompt_length_with_cache"] = {str(k): round(v, 1) for k, v in rates.items()}
    res["prompt_256_over_32"] = round(rates[256] / rates[32], 3)
    res["sims_per_s_by_prompt_length_encoding_prefix"] = {str(k): round(v, 1) for k, v in rates_enc.items()}
    res["prompt_256_over_32_encoding_prefix"] = round(rates_enc[256] / rates_enc[32], 3)


def _tree_memory(res, model_fn, depth, key) -> None:
    """The search tree's memory (``jax.eval_shape``, nothing run) at vocabularies 32,000 and 151,936 (Qwen's),
    B=64, 64 simulations, top-K 16."""
    for vocab in (32_000, 151_936):
        env_v = RandomTokens(vocab=vocab, prompt_length=32, response_length=32)
        model_v = model_fn(env_v)
        params_v = jax.eval_shape(model_v.init, key)
        states_v = jax.eval_shape(lambda k, env_v=env_v: _states(env_v, 64, k), key)
        mem = {}
        for ev in ("kv", "window"):
            out = jax.eval_shape(
                functools.partial(
                    jr.mcts_policy, model_v, env=env_v, num_simulations=64, top_k=16, max_depth=depth, evaluation=ev
                ),
                params=params_v,
                states=states_v,
                key=key,
            )
            mem[ev] = round(tree_bytes(out.search_tree) / 2**20, 2)
        res[f"tree_MiB_vocab{vocab}_B64_sims64"] = mem


def _big_vocab(res, model_fn, depth, args, key) -> None:
    """Simulations/s of jr.mcts_policy (top-K 16, "kv") at vocabulary 151,936 with the tiny model, B=64, 64
    simulations: the top-K search never builds a [B, N, V] array, so the vocabulary costs only the logits."""
    env_v = RandomTokens(vocab=151_936, prompt_length=32, response_length=32)
    model_v = model_fn(env_v)
    params_v = model_v.init(key)
    states_v = _states(env_v, 64, key)
    fn = jax.jit(functools.partial(jr.mcts_policy, model_v, env=env_v, num_simulations=64, top_k=16, max_depth=depth))
    secs = _time(lambda p, s, k: fn(params=p, states=s, key=k), params_v, states_v, key, repeats=args.repeats)
    res["sims_per_s_vocab151936_B64_sims64"] = round(64 * 64 / secs, 1)
    res["params_M_vocab151936"] = round(sum(x.size for x in jax.tree.leaves(params_v)) / 1e6, 2)


if __name__ == "__main__":
    main()
