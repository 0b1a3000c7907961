#!/usr/bin/env python
"""Figure of docs/RESULTS.md "The main job": held-out accuracy against training wall-clock, the main job
(imitation, then STaR) against its control (imitation only), from the two runs' metrics.jsonl.

    python scripts/plot_main_job.py workdirs/default workdirs/default_sft_only docs/main_job.png
"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def curve(workdir: str) -> tuple[list[float], list[float], float | None]:
    rows = [json.loads(line) for line in open(f"{workdir}/metrics.jsonl")]
    t0 = rows[0]["time"]
    evals = [r for r in rows if r["phase"] == "eval"]
    sft = [r["time"] - t0 for r in rows if r["phase"] == "sft"]
    switch = sft[-1] if sft and any(r["phase"] not in ("sft", "eval") for r in rows) else None
    return [r["time"] - t0 for r in evals], [r["accuracy"] for r in evals], switch


def main(main_job: str, control: str, out: str) -> None:
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    t, acc, switch = curve(main_job)
    ax.plot(t, acc, "o-", label="imitation (256 worked solutions), then STaR")
    tc, accc, _ = curve(control)
    ax.plot(tc, accc, "s--", label="imitation only (control)")
    if switch is not None:
        ax.axvline(switch, color="grey", linestyle=":", linewidth=1)
        ax.text(switch, 0.05, " RL starts", color="grey", fontsize=8)
    ax.set(xlabel="training wall-clock (s, 2-core CPU)", ylabel="held-out accuracy (pass@1, 512 problems)")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:4])
