"""Self-play + training throughput on a 1-device mesh vs an 8-device mesh (8 fake CPU devices). Prints JSON.

    python bench/scale.py            # the default config's shapes (2-digit addition, 64 episodes, 8 simulations)
    python bench/scale.py --quick    # smaller, for a smoke run
    python bench/scale.py --num_episodes 256   # more self-play work per device
    python bench/scale.py --config configs/tic_tac_toe.py   # any training config's shapes (self-play heavy)

Both variants run in this one process with the same jitted training functions (`make_train_fns`):
``(1, 1)`` on ``jax.devices()[:1]`` and ``(8, 1)`` (data-parallel) on all 8. XLA_FLAGS is set below,
before jax is imported. Timed: one self-play iteration + ``updates_per_iteration`` RL updates
(episodes/s, updates/s), and SFT updates alone (updates/s); the best of ``--repeats`` after a warm-up.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

from jaxrl_reason import parallel  # noqa: E402
from jaxrl_reason.config import base_config, load_config  # noqa: E402
from jaxrl_reason.envs.registry import make  # noqa: E402
from jaxrl_reason.problems import demonstration_set, run_problem_sets  # noqa: E402
from jaxrl_reason.training.imitation import sft_batch  # noqa: E402
from jaxrl_reason.training.loop import make_train_fns  # noqa: E402
from jaxrl_reason.training.state import build_model, build_optimizer, init_state, is_reasoning_task  # noqa: E402


def bench_config(quick: bool, num_episodes: int | None = None, path: str | None = None):
    if path:  # a training config file as it is (its self-play and RL shapes)
        c = load_config(path)
        if num_episodes:
            c.selfplay.num_episodes = num_episodes
        return c
    c = base_config()  # configs/default.py's self-play shapes
    c.env_id = "addition-v0"
    c.env_kwargs.num_digits = 2
    c.sft.batch_size = 64
    c.sft.num_examples = 256
    c.selfplay.num_episodes = 32 if quick else 64
    c.selfplay.num_simulations = 4 if quick else 8
    c.selfplay.top_k = 4
    c.selfplay.max_depth = 4
    c.selfplay.updates_per_iteration = 4
    c.selfplay.batch_size = 64
    c.selfplay.rescale_values = False
    if num_episodes:
        c.selfplay.num_episodes = num_episodes
    return c


def measure(config, env, model, tx, data, devices, repeats: int) -> dict:
    mesh = parallel.make_mesh(len(devices), 1, devices=devices)
    fns = make_train_fns(config, env, model, tx, mesh=mesh)
    state = init_state(config, env, model, tx, mesh=mesh)
    sp = config.selfplay

    def sft(state):
        batch = sft_batch(data, 0, config.sft.batch_size, config.seed)
        state, m = fns.sft_update(state, parallel.host_batch_to_global(batch, fns.batch_shardings(batch)))
        return state, m

    def iteration(state):
        state, m = fns.collect(state)
        for _ in range(sp.updates_per_iteration):
            state, m = fns.update(state)
        return state, m

    out = {"mesh": dict(mesh.shape)}
    t = time.perf_counter()
    if data is not None:
        state, m = sft(state)
    state, m = iteration(state)  # compiles everything
    jax.block_until_ready(m)
    out["compile_and_first_s"] = round(time.perf_counter() - t, 2)
    best_it, best_sft, best_sp = float("inf"), float("inf"), float("inf")
    cores = []
    for _ in range(repeats):
        t, c = time.perf_counter(), os.times()
        state, m = iteration(state)
        jax.block_until_ready((state, m))
        best_it = min(best_it, time.perf_counter() - t)
        c1 = os.times()  # CPU seconds used per wall second: how many cores this mesh keeps busy
        cores.append((c1.user - c.user + c1.system - c.system) / (time.perf_counter() - t))
        t = time.perf_counter()
        state, m = fns.collect(state)
        jax.block_until_ready((state, m))
        best_sp = min(best_sp, time.perf_counter() - t)
        if data is not None:
            t = time.perf_counter()
            for _ in range(sp.updates_per_iteration):
                state, m = sft(state)
            jax.block_until_ready((state, m))
            best_sft = min(best_sft, time.perf_counter() - t)
    out["selfplay_iteration_s"] = round(best_it, 3)
    out["iteration_cores_busy"] = round(sum(cores) / len(cores), 2)
    out["selfplay_only_s"] = round(best_sp, 3)
    out["selfplay_episodes_per_s"] = round(sp.num_episodes / best_sp, 1)
    out["rl_updates_per_s_incl_selfplay"] = round(sp.updates_per_iteration / best_it, 2)
    out["sft_updates_per_s"] = round(sp.updates_per_iteration / best_sft, 2) if data is not None else None
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--devices", type=int, default=8, help="devices of the multi-device mesh (<= 8)")
    parser.add_argument("--num_episodes", type=int, default=None, help="self-play episodes per iteration")
    parser.add_argument("--config", default=None, help="a training config file to take the shapes from")
    args = parser.parse_args()
    config = bench_config(args.quick, args.num_episodes, args.config)
    env = make(config.env_id, **config.env_kwargs)
    model, tx = build_model(config, env), build_optimizer(config)
    data = None
    if is_reasoning_task(env):  # reasoning tasks: SFT on worked solutions; games have none
        data = demonstration_set(env, run_problem_sets(env, config.seed, config.sft.num_examples, 1)[0])
    one = measure(config, env, model, tx, data, jax.devices()[:1], args.repeats)
    eight = measure(config, env, model, tx, data, jax.devices()[: args.devices], args.repeats)
    result = {
        "command": "python " + " ".join(sys.argv),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.processor() or platform.platform()}",
        "versions": {"jax": jax.__version__, "python": platform.python_version()},
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "config": {
            "env": config.env_id,
            "num_episodes": config.selfplay.num_episodes,
            "num_simulations": config.selfplay.num_simulations,
            "top_k": config.selfplay.top_k,
            "rl_batch": config.selfplay.batch_size,
            "sft_batch": config.sft.batch_size,
            "params": model.num_params(),
        },
        "one_device": one,
        "eight_devices": eight,
        "speedup_selfplay_plus_rl": round(one["selfplay_iteration_s"] / eight["selfplay_iteration_s"], 2),
        "speedup_selfplay_only": round(one["selfplay_only_s"] / eight["selfplay_only_s"], 2),
        "speedup_sft": round(eight["sft_updates_per_s"] / one["sft_updates_per_s"], 2) if data is not None else None,
    }
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
