"""Held-out evaluation on one device against the same work split over a mesh of all devices. Prints JSON.

    python bench/evaluate.py                       # default env, tiny preset (random init), 256 problems
    python bench/evaluate.py --workdir workdirs/x  # a trained run's agent and held-out problems

On a CPU-only machine the script asks for 8 fake CPU devices (as the training and evaluation commands do):
one JAX CPU device keeps one core busy, a mesh of 8 uses them all. For each method (greedy rollouts and MCTS
decoding) it times :func:`jr.evaluate` with ``mesh=None`` and with ``jr.make_mesh()``, alternating the two
``--repeats`` times after one compile each, checks that both give the same metrics, and reports the median
problems/s and their ratio.
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402

import jaxrl_reason as jr  # noqa: E402
from jaxrl_reason.config import base_config  # noqa: E402
from jaxrl_reason.problems import heldout_problems  # noqa: E402
from jaxrl_reason.training.state import build_model  # noqa: E402


def _agent(args):
    if args.workdir:
        return jr.Agent.load(args.workdir)
    config = base_config()
    config.eval.num_problems = args.problems
    env = jr.make(config.env_id)
    model = build_model(config, env)
    return jr.Agent(model=model, params=model.init(jax.random.PRNGKey(0)), env=env, config=config)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default="")
    ap.add_argument("--problems", type=int, default=256)
    ap.add_argument("--simulations", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    agent = _agent(args)
    problems = heldout_problems(agent.env, agent.config)[: args.problems]
    mesh = jr.make_mesh()
    out = {
        "command": " ".join(["bench/evaluate.py", *(sys.argv[1:] if argv is None else argv)]),
        "machine": platform.machine(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "devices": jax.device_count(),
        "env": agent.env.spec.env_id,
        "problems": len(problems),
    }
    for method in ("greedy", "mcts"):
        kw = dict(method=method, batch_size=len(problems))
        if method == "mcts":
            kw["search"] = jr.SearchConfig(num_simulations=args.simulations, top_k=8, gumbel_scale=0.0)
        times: dict = {"one_device": [], "mesh": []}
        results = {}
        for _ in range(args.repeats + 1):  # the first round compiles
            for name, m in (("one_device", None), ("mesh", mesh)):
                t0 = time.perf_counter()
                results[name] = jr.evaluate(agent, agent.env, problems, mesh=m, **kw)
                times[name].append(time.perf_counter() - t0)
        if results["one_device"] != results["mesh"]:
            raise AssertionError(f"{method}: the mesh changed the results: {results}")
        one, many = (statistics.median(times[k][1:]) for k in ("one_device", "mesh"))
        out[method] = {
            "accuracy": results["mesh"]["accuracy"],
            "one_device_problems_per_s": round(len(problems) / one, 1),
            "mesh_problems_per_s": round(len(problems) / many, 1),
            "mesh_speedup": round(one / many, 2),
        }
        if method == "mcts":
            out[method]["num_simulations"] = args.simulations
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
