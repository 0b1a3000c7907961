"""Metrics files and learning-curve plots."""

import json
import os

import matplotlib.image

from jaxrl_reason.run.metrics import MetricsWriter, plot_learning_curves, read_metrics


def _write(workdir, records):
    w = MetricsWriter(workdir, tensorboard=False)
    for step, phase, m in records:
        w.write(step, m, phase=phase)
    w.close()


def test_jsonl_round_trip_and_reasoning_plot(tmp_path):
    d = str(tmp_path / "task")
    _write(d, [(10, "sft", {"loss": 2.0}), (20, "sft", {"loss": 1.0}), (20, "eval", {"accuracy": 0.5})])
    rows = read_metrics(d)
    assert [(r["step"], r["phase"]) for r in rows] == [(10, "sft"), (20, "sft"), (20, "eval")]
    assert rows[2]["accuracy"] == 0.5
    with open(os.path.join(d, "metrics.jsonl")) as f:
        assert json.loads(f.readline())["loss"] == 2.0
    path = plot_learning_curves(d)
    assert path and matplotlib.image.imread(path).shape[:2] == (380, 1000)


def test_game_runs_plot_self_play_outcomes_instead_of_an_empty_accuracy_panel(tmp_path):
    game, empty = str(tmp_path / "game"), str(tmp_path / "empty")
    sp = {"loss": 1.0, "selfplay_draw_rate": 0.2, "selfplay_return": 0.4}
    _write(game, [(s, "alphazero", {**sp, "selfplay_draw_rate": s / 100}) for s in (10, 20, 30)])
    _write(empty, [(s, "alphazero", {"loss": 1.0}) for s in (10, 20, 30)])
    left = lambda p: matplotlib.image.imread(plot_learning_curves(p))[:, :500]  # noqa: E731
    # the left panel has lines (and a legend) only when self-play outcomes were logged
    assert (left(game) != left(empty)).any()
