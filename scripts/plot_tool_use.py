#!/usr/bin/env python
"""Figure of docs/RESULTS.md "Tool calls": held-out accuracy against imitation steps, with the calculator
(configs/multiply_tool.py) and without (configs/multiply.py), from the two runs' metrics.jsonl.

    python scripts/plot_tool_use.py workdirs/multiply_tool workdirs/multiply docs/tool_use.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(workdir: str) -> tuple[list[int], list[float]]:
    rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
    evals = [r for r in rows if r["phase"] == "eval"]
    return [r["step"] for r in evals], [r["accuracy"] for r in evals]


def main(tool: str, control: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    ax.plot(*curve(tool), "o-", label="with the calculator (the env writes each result)")
    ax.plot(*curve(control), "s--", label="without (the model computes each result)")
    ax.set(xlabel="imitation steps (batch 64)", ylabel="held-out accuracy (pass@1, 500 problems)")
    ax.set_title("multiply-v0, 3 by 2 digits, same model and steps", fontsize=9)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
