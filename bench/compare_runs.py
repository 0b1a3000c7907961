"""Held-out accuracy against wall-clock time of several runs (SFT alone vs SFT + GRPO vs SFT + AlphaZero).

    python bench/compare_runs.py --out docs/sft_grpo_alphazero.png workdirs/cmp_sft workdirs/cmp_grpo workdirs/cmp_az

Time 0 of a run is when it wrote its config.json (before compiling). Prints JSON: per run, the eval points
``(step, wall_s, accuracy)``, the command line, the machine and versions.
"""

import argparse
import json
import os
import platform
import sys

import jax
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(workdir: str) -> list[tuple[int, float, float]]:
    t0 = os.path.getmtime(os.path.join(workdir, "config.json"))
    out = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            if d["phase"] == "eval":
                out.append((d["step"], round(d["time"] - t0, 1), d["accuracy"]))
    return out


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workdirs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--title", default="")
    args = parser.parse_args()
    curves = {os.path.basename(w.rstrip("/")): curve(w) for w in args.workdirs}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for name, c in curves.items():
        axes[0].plot([x[1] for x in c], [x[2] for x in c], marker="o", label=name)
        axes[1].plot([x[0] for x in c], [x[2] for x in c], marker="o", label=name)
    axes[0].set_xlabel("wall-clock seconds (shared 2-core CPU)")
    axes[1].set_xlabel("optimizer step")
    for ax in axes:
        ax.set_ylabel("held-out accuracy (greedy)")
        ax.grid(alpha=0.3)
        ax.legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(
        json.dumps(
            {
                "command": " ".join(sys.argv),
                "machine": platform.processor() or platform.machine(),
                "cpus": os.cpu_count(),
                "jax": jax.__version__,
                "curves": curves,
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
