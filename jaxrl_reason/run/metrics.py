"""Metrics: JSONL + TensorBoard event files under the workdir, and PNG learning curves."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np


class MetricsWriter:
    """Appends ``{"step", "phase", **metrics}`` lines to ``<workdir>/metrics.jsonl`` and TensorBoard.

    Only the writing process (``jax.process_index() == 0``) should create one with ``enabled=True``.
    """

    def __init__(self, workdir: str, *, enabled: bool = True, tensorboard: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            if tensorboard:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))

    def write(self, step: int, metrics: Mapping[str, Any], *, phase: str = "train") -> None:
        if not self.enabled:
            return
        clean = {k: _scalar(v) for k, v in metrics.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": int(step), "phase": phase, "time": round(time.time(), 2), **clean}) + "\n")
        if self._tb is not None:
            for k, v in clean.items():
                if isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{phase}/{k}", v, int(step))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _scalar(v: Any) -> Any:
    if isinstance(v, (str, bool, int, float)) or v is None:
        return v
    arr = np.asarray(v)
    return arr.item() if arr.size == 1 else arr.tolist()


def read_metrics(workdir: str) -> list[dict]:
    """All records of ``<workdir>/metrics.jsonl`` (empty list if none)."""
    path = os.path.join(workdir, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def phase_changes(records: list[dict]) -> list[tuple[int, str]]:
    """``(step, phase)`` where the training phase changes (e.g. ``sft`` -> ``star``), from metrics records."""
    out, last, last_step = [], None, 0
    for r in records:
        if "loss" not in r:
            continue
        if last is not None and r["phase"] != last:
            out.append((last_step, r["phase"]))  # the last logged step of the phase before
        last, last_step = r["phase"], r["step"]
    return out


def _mark_phases(records: list[dict], axes) -> None:
    """A dashed vertical line and the new phase's name where the training phase changes."""
    for step, phase in phase_changes(records):
        for ax in axes:
            ax.axvline(step, color="grey", linestyle="--", linewidth=1)
        axes[0].text(step, 0.02, f" {phase} \u2192", color="grey", fontsize=8, va="bottom")


def plot_learning_curves(workdir: str, *, filename: str = "learning_curves.png") -> str | None:
    """Writes a PNG of held-out accuracy and training loss against steps; returns its path."""
    records = read_metrics(workdir)
    if not records:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    evals = [r for r in records if r["phase"] == "eval" and "accuracy" in r]
    if evals:
        ax_acc.plot([r["step"] for r in evals], [r["accuracy"] for r in evals], "o-")
        ax_acc.set(xlabel="step", ylabel="held-out accuracy", ylim=(-0.02, 1.02), title="Held-out accuracy")
    else:  # games have no held-out problems: show how self-play games end instead
        play = [r for r in records if "selfplay_draw_rate" in r]
        steps = [r["step"] for r in play]
        ax_acc.plot(steps, [r["selfplay_draw_rate"] for r in play], label="draw rate")
        ax_acc.plot(steps, [(1 + r["selfplay_return"]) / 2 for r in play], label="first player's score")
        ax_acc.set(xlabel="step", ylabel="fraction of games", ylim=(-0.02, 1.02), title="Self-play")
        if ax_acc.lines:
            ax_acc.legend()
    for phase in sorted({r["phase"] for r in records if "loss" in r}):
        rows = [r for r in records if r["phase"] == phase and "loss" in r]
        ax_loss.plot([r["step"] for r in rows], [r["loss"] for r in rows], label=phase)
    ax_loss.set(xlabel="step", ylabel="loss", title="Training loss")
    if ax_loss.lines:
        ax_loss.legend()
    _mark_phases(records, (ax_acc, ax_loss))
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(workdir, filename)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
