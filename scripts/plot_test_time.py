#!/usr/bin/env python
"""The README's test-time-compute figure: held-out accuracy against tokens spent per problem, thinking longer
(greedy with the response cut at N tokens) and sampling more (best-of-N, majority vote; no verifier), for an
imitation-only run and for the run after RL, from two sweeps' ttc_sweep.csv.

    python -m jaxrl_reason.evaluate --workdir W --sweep --thinking_budgets 6,9,12,15,18 --best_of_n 2,4,8,16 \\
        --mcts_sims 1,4,16 --beam_widths "" --step_beam_widths "" --lookahead "" --out_dir OUT
    python scripts/plot_test_time.py OUT_RL OUT_IMITATION docs/test_time_compute.png [NUM_PROBLEMS]
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(out_dir: str) -> list[dict]:
    with open(f"{out_dir}/ttc_sweep.csv") as f:
        return list(csv.DictReader(f))


def series(table: list[dict], method: str, selection: str) -> tuple[list[float], list[float]]:
    picked = [r for r in table if r["method"] == method and r["selection"] == selection]
    if method == "greedy" and selection == "thinking":  # the uncut greedy pass closes the curve
        picked += [r for r in table if r["method"] == "greedy" and r["selection"] == ""]
    if method == "best_of_n":  # N = 1 is the greedy pass's sample budget; start from greedy
        picked = [r for r in table if r["method"] == "greedy" and r["selection"] == ""] + picked
    picked.sort(key=lambda r: float(r["tokens_per_problem"]))
    return [float(r["tokens_per_problem"]) for r in picked], [float(r["accuracy"]) for r in picked]


#: best-of-N selections drawn when the sweep has them: (selection, marker, label)
SELECTIONS = (
    ("majority", "s--", "best-of-N, majority vote"),
    ("orm", "^-.", "best-of-N, value head (ORM)"),
    ("verifier", "d:", "best-of-N, first the verifier accepts (with verifier)"),
)


def main(rl_dir: str, imitation_dir: str, out: str, num_problems: str = "512") -> None:
    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    for label, table, color in (("after RL", rows(rl_dir), "C0"), ("imitation only", rows(imitation_dir), "C1")):
        x, y = series(table, "greedy", "thinking")
        ax.plot(x, y, "o-", color=color, label=f"{label}: thinking budget (greedy, cut at N tokens)")
        for selection, style, name in SELECTIONS:
            if any(r["method"] == "best_of_n" and r["selection"] == selection for r in table):
                x, y = series(table, "best_of_n", selection)
                ax.plot(x, y, style, color=color, label=f"{label}: {name}")
    ax.set_xscale("log")
    ax.set(xlabel="tokens generated per problem", ylabel=f"held-out accuracy ({num_problems} problems)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


if __name__ == "__main__":
    main(*sys.argv[1:5])
