#!/usr/bin/env python
"""Figure of docs/RESULTS.md "Collection with a parameter lag": held-out accuracy against the update step for
main-job runs with different ``rl.max_lag`` (each workdir's label from its saved config).

    python scripts/plot_lag.py docs/lag.png workdirs/lag0 workdirs/lag1 workdirs/lag4
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(out: str, *workdirs: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    rl_start = None
    for workdir in workdirs:
        config = json.load(open(f"{workdir}/config.json"))["config"]
        evals = [r for r in map(json.loads, open(f"{workdir}/metrics.jsonl")) if r["phase"] == "eval"]
        rl_start = config["sft"]["steps"]
        label = f"max_lag {config['rl'].get('max_lag', 0)}, seed {config['seed']}"
        ax.plot([r["step"] for r in evals], [r["accuracy"] for r in evals], "o-", label=label, markersize=3)
    ax.axvline(rl_start, color="grey", linestyle=":", linewidth=1)
    ax.text(rl_start, 0.05, " RL starts", color="grey", fontsize=8)
    ax.set(xlabel="update step", ylabel="held-out accuracy (pass@1, 512 problems)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:])
