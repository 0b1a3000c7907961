"""Model benchmark: matmul peak, train-step MFU, KV-cache vs full-recompute sampling. Prints JSON.

    python bench/model.py                 # everything (a few minutes on 2 CPU cores)
    python bench/model.py --quick         # fewer repeats

MFU is measured against the f32 matmul peak (2048² matmul) of this machine, measured in the same run:
the machine is shared and noisy, so every timing of a train step is paired with a peak timing taken just
before it and MFU is computed per pair (best and median reported). Train step: tiny preset,
B=256, L=64, AdamW, jit with donation, in four variants (f32 / bf16 matmul inputs with f32
accumulation; one device / batch sharded over 8 fake CPU devices). Sampling: tiny preset, B=256,
L=128 (8-token prompts, 120 sampled tokens), :func:`jaxrl_reason.rollout` (prefill + decode with the
KV cache) against a rollout that recomputes the full forward over the whole buffer for every token.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import flax  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import jaxrl_reason as jr  # noqa: E402
from jaxrl_reason.models import flops  # noqa: E402
from jaxrl_reason.models.sampling import mask_logits, sample_action  # noqa: E402

VOCAB = 64


class FreeText(jr.TokenEnv):
    """Every token legal, the episode ends at the length limit (a pure sampling workload)."""

    def __init__(self, max_length: int = 128, prompt_length: int = 8):
        self._spec = jr.EnvSpec(
            "free-text-v0", num_actions=VOCAB, vocab_size=VOCAB, max_length=max_length,
            max_prompt_length=prompt_length, eos_id=None,
        )  # fmt: skip

    @property
    def spec(self):
        return self._spec

    def sample_problem(self, key):
        return jax.random.randint(key, (self._spec.max_prompt_length,), 2, VOCAB, jnp.int32)

    def _init(self, problem):
        s = self._spec
        tokens = jnp.zeros((s.max_length,), jnp.int32).at[: s.max_prompt_length].set(problem)
        n = jnp.int32(s.max_prompt_length)
        return jr.EnvState(
            tokens=tokens, length=n, prompt_length=n, current_player=jnp.int32(0),
            legal_action_mask=jnp.ones((VOCAB,), bool), rewards=jnp.zeros((1,)), terminated=jnp.bool_(False),
            truncated=jnp.bool_(False), problem=problem,
        )  # fmt: skip

    def _step(self, state, action):
        return state


def _time(fn, *, repeats: int, number: int = 1) -> dict:
    """Best and median seconds per call of ``fn`` (which blocks), after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - t) / number)
    return {"best_s": min(times), "median_s": float(np.median(times))}


def matmul_peak(repeats: int) -> dict:
    out = {}
    for dtype, pref in (("float32", None), ("bfloat16", jnp.float32)):
        best = 0.0
        for n in (1024, 2048, 3072):
            a = jnp.ones((n, n), dtype)
            f = jax.jit(lambda x, y, pref=pref: jnp.matmul(x, y, preferred_element_type=pref))
            t = _time(lambda a=a, f=f: f(a, a).block_until_ready(), repeats=repeats)
            best = max(best, 2 * n**3 / t["best_s"] / 1e9)
        out[dtype if pref is None else "bf16_in_f32_acc"] = round(best, 1)
    return out


def train_bench(cfg: jr.TransformerConfig, *, batch: int, length: int, sharded: bool, repeats: int) -> dict:
    model = jr.PolicyValueTransformer(cfg)
    opt = optax.adamw(3e-4, weight_decay=0.01)
    params = model.init(jax.random.key(0))
    state = (params, opt.init(params))
    rng = np.random.default_rng(0)
    tokens = jnp.asarray(rng.integers(0, cfg.vocab_size, (batch, length)), jnp.int32)
    targets = jnp.asarray(rng.integers(0, cfg.num_actions, (batch, length)), jnp.int32)
    z = jnp.asarray(rng.uniform(-1, 1, (batch, length)), jnp.float32)

    def loss_fn(params, tokens, targets, z):
        logits, values = model.apply(params, tokens)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets).mean()
        return ce + jnp.mean(jnp.square(values - z))

    def step(state, tokens, targets, z):
        params, opt_state = state
        loss, grads = jax.value_and_grad(loss_fn)(params, tokens, targets, z)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    if sharded:
        mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        rep, data = jax.NamedSharding(mesh, jax.P()), jax.NamedSharding(mesh, jax.P("data"))
        state = jax.device_put(state, rep)
        tokens, targets, z = jax.device_put((tokens, targets, z), data)
        jstep = jax.jit(step, in_shardings=(rep, data, data, data), out_shardings=(rep, rep), donate_argnums=0)
    else:
        jstep = jax.jit(step, donate_argnums=0)
    box = [state]

    def run():
        box[0], loss = jstep(box[0], tokens, targets, z)
        loss.block_until_ready()

    # The machine is shared and noisy: every timing of the step is paired with a timing of the f32
    # matmul peak taken right before it, and MFU is computed per pair (ratio measured in one run).
    peak_fn = _peak_matmul_fn()
    flop = flops.train_flops_per_token(cfg, length) * batch * length
    run()
    steps, peaks, mfus = [], [], []
    for _ in range(repeats):
        peak = peak_fn()
        t = _time(run, repeats=1, number=2)["best_s"]
        steps.append(t)
        peaks.append(peak)
        mfus.append(flop / t / 1e9 / peak)
    return {
        "step_s": {"best_s": min(steps), "median_s": float(np.median(steps))},
        "gflops_per_s": round(flop / min(steps) / 1e9, 1),
        "paired_f32_peak_gflops": [round(x, 1) for x in peaks],
        "mfu_vs_f32_peak": {"best": round(max(mfus), 3), "median": round(float(np.median(mfus)), 3)},
        "flops_per_step": flop,
    }


def _peak_matmul_fn(n: int = 2048):
    """A function returning the f32 GFLOP/s of an n×n matmul (best of 3)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    f(a, a).block_until_ready()

    def peak():
        return 2 * n**3 / _time(lambda: f(a, a).block_until_ready(), repeats=3)["best_s"] / 1e9

    return peak


def recompute_rollout(model, params, env, states, key, *, num_steps, temperature=1.0):
    """Reference sampler without a cache: a full forward over the whole ``[B, L]`` buffer for every token.

    Its cost per token does not depend on the step (the buffer is always ``L`` wide), so the benchmark
    times ``num_steps`` steps rather than the whole response.
    """
    rows = jnp.arange(states.tokens.shape[0])

    def step(state, k):
        logits, _ = model.apply(params, state.tokens)
        masked = mask_logits(logits[rows, state.length - 1], state.legal_action_mask)
        action = sample_action(k, masked, temperature=temperature)
        return jax.vmap(env.step)(state, action), action

    final, actions = jax.lax.scan(step, states, jax.random.split(key, num_steps))
    return final.tokens, actions


def sampling_bench(
    cfg: jr.TransformerConfig, *, batch: int, length: int, sharded: bool, repeats: int, recompute_steps: int = 8
) -> dict:
    env = FreeText(length)
    model = jr.PolicyValueTransformer(cfg)
    params = model.init(jax.random.key(0))
    states = jax.jit(jax.vmap(env.init))(jax.random.split(jax.random.key(1), batch))
    cached = lambda p, s, k: jr.rollout(model, p, env, s, k).tokens
    full = lambda p, s, k: recompute_rollout(model, p, env, s, k, num_steps=recompute_steps)[0]
    if sharded:
        mesh = jax.make_mesh((len(jax.devices()),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
        rep, data = jax.NamedSharding(mesh, jax.P()), jax.NamedSharding(mesh, jax.P("data"))
        params, states = jax.device_put(params, rep), jax.device_put(states, data)
        jit = lambda f: jax.jit(f, in_shardings=(rep, data, rep), out_shardings=data)
    else:
        jit = jax.jit
    out = {}
    for name, f, steps in (
        ("kv_cache", jit(cached), env.spec.max_response_length),
        ("full_recompute", jit(full), recompute_steps),
    ):
        t = _time(lambda f=f: f(params, states, jax.random.key(2)).block_until_ready(), repeats=repeats)
        out[name] = {"steps": steps, "rollout_s": t, "tokens_per_s": round(batch * steps / t["best_s"], 1)}
    out["speedup"] = round(out["kv_cache"]["tokens_per_s"] / out["full_recompute"]["tokens_per_s"], 2)
    return out


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        return platform.processor()


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer repeats")
    ap.add_argument("--only", choices=("peak", "train", "sampling"), help="run one part (peak always runs)")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick else 7
    batch, length = 256, 64
    tiny = jr.TransformerConfig.preset("tiny", num_actions=VOCAB, vocab_size=VOCAB, max_length=128)
    result = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpu": _cpu_model(),
            "cpus": os.cpu_count(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2),
            "devices": [str(d) for d in jax.devices()][:2] + ["..."],
        },  # fmt: skip
        "versions": {"jax": jax.__version__, "flax": flax.__version__, "optax": optax.__version__},
        "params": jr.PolicyValueTransformer(tiny).num_params(),
    }
    peak_before = matmul_peak(repeats)
    train = {}
    for dtype in ("float32", "bfloat16") if args.only in (None, "train") else ():
        for sharded in (False, True):
            name = f"{dtype}_{'8dev' if sharded else '1dev'}"
            cfg = dataclasses.replace(tiny, dtype=dtype)
            r = train_bench(cfg, batch=batch, length=length, sharded=sharded, repeats=repeats)
            train[name] = r
            print(name, r, file=sys.stderr, flush=True)
    peak_after = matmul_peak(repeats)
    peak = {k: max(peak_before[k], peak_after[k]) for k in peak_before}
    result["matmul_peak_gflops"] = {**peak, "before": peak_before, "after": peak_after}
    result["train_step_tiny_B256_L64"] = train
    if args.only in (None, "sampling"):
        sampling = {}
        for sharded in (False, True):
            name = "8dev" if sharded else "1dev"
            sampling[name] = sampling_bench(tiny, batch=256, length=128, sharded=sharded, repeats=max(2, repeats // 2))
            print(name, sampling[name], file=sys.stderr, flush=True)
        result["sampling_tiny_B256_L128"] = sampling
    result["machine"]["load_avg_1m_at_end"] = round(os.getloadavg()[0], 2)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
