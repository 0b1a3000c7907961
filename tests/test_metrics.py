"""Metrics files and learning-curve plots: what is read back from the JSONL and TensorBoard files equals what was
logged; each plot panel shows the data it is given."""

import glob
import json
import os
import struct

import jax.numpy as jnp
import matplotlib.image
import numpy as np
from tensorboardX.proto import event_pb2

from jaxrl_reason.run.metrics import MetricsWriter, plot_learning_curves, read_metrics


def _write(workdir, records, tensorboard=False):
    w = MetricsWriter(workdir, tensorboard=tensorboard)
    for step, phase, m in records:
        w.write(step, m, phase=phase)
    w.close()


def _tensorboard_scalars(workdir) -> dict:
    """``{(tag, step): value}`` of the scalars in the TFRecord event files (length, crc, event, crc)."""
    out = {}
    for path in glob.glob(os.path.join(workdir, "tensorboard", "events.out.tfevents.*")):
        data = open(path, "rb").read()
        pos = 0
        while pos < len(data):
            (n,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + n])
            pos += 12 + n + 4
            for v in event.summary.value:
                out[(v.tag, event.step)] = v.simple_value
    return out


def test_jsonl_and_tensorboard_hold_the_logged_values(tmp_path):
    d = str(tmp_path / "task")
    logged = [
        (10, "sft", {"loss": 2.0, "lr": np.float32(0.25), "n": np.int32(7)}),
        (20, "sft", {"loss": jnp.asarray(1.5), "grad": jnp.array([0.125]), "flag": True}),
        (20, "eval", {"accuracy": 0.5, "per_class": np.array([0.25, 0.75]), "method": "greedy", "x": None}),
    ]
    _write(d, logged, tensorboard=True)
    rows = read_metrics(d)
    assert len(rows) == 3
    plain = [
        {"loss": 2.0, "lr": 0.25, "n": 7},
        {"loss": 1.5, "grad": 0.125, "flag": True},
        {"accuracy": 0.5, "per_class": [0.25, 0.75], "method": "greedy", "x": None},
    ]
    for row, (step, phase, _), values in zip(rows, logged, plain, strict=True):
        assert isinstance(row.pop("time"), float)
        assert row == {"step": step, "phase": phase, **values}
        assert all(type(row[k]) is type(v) for k, v in values.items())  # 7 stays an int, True a bool
    with open(os.path.join(d, "metrics.jsonl")) as f:
        assert [json.loads(line)["step"] for line in f] == [10, 20, 20]
    # TensorBoard: every numeric scalar under phase/name at its step; strings, None and vectors are not scalars
    expected = {
        ("sft/loss", 10): 2.0,
        ("sft/lr", 10): 0.25,
        ("sft/n", 10): 7.0,
        ("sft/loss", 20): 1.5,
        ("sft/grad", 20): 0.125,
        ("sft/flag", 20): 1.0,
        ("eval/accuracy", 20): 0.5,
    }
    assert _tensorboard_scalars(d) == expected


def test_disabled_writer_writes_nothing(tmp_path):
    d = str(tmp_path / "off")
    w = MetricsWriter(d, enabled=False)
    w.write(1, {"loss": 1.0})
    w.close()
    assert not os.path.exists(d) and read_metrics(d) == []
    assert plot_learning_curves(d) is None


def test_each_panel_plots_its_data(tmp_path):
    def plot(name, records):
        d = str(tmp_path / name)
        _write(d, records)
        image = matplotlib.image.imread(plot_learning_curves(d))
        assert image.shape[:2] == (380, 1000)  # figsize (10, 3.8) at 100 dpi
        return image[:, :500], image[:, 500:]

    base = [(10, "sft", {"loss": 2.0}), (20, "sft", {"loss": 1.0}), (20, "eval", {"accuracy": 0.5})]
    left, right = plot("base", base)
    assert (plot("same", base)[0] == left).all()  # the same data draws the same pixels
    assert (plot("acc", base[:2] + [(20, "eval", {"accuracy": 0.9})])[0] != left).any()  # another accuracy
    assert (plot("loss", [base[0], (20, "sft", {"loss": 0.2}), base[2]])[1] != right).any()  # another loss


def test_game_runs_plot_self_play_outcomes_instead_of_an_empty_accuracy_panel(tmp_path):
    game, empty = str(tmp_path / "game"), str(tmp_path / "empty")
    sp = {"loss": 1.0, "selfplay_draw_rate": 0.2, "selfplay_return": 0.4}
    _write(game, [(s, "alphazero", {**sp, "selfplay_draw_rate": s / 100}) for s in (10, 20, 30)])
    _write(empty, [(s, "alphazero", {"loss": 1.0}) for s in (10, 20, 30)])
    left = lambda p: matplotlib.image.imread(plot_learning_curves(p))[:, :500]  # noqa: E731
    # the left panel has lines (and a legend) only when self-play outcomes were logged
    assert (left(game) != left(empty)).any()
