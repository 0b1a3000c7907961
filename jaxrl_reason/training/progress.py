"""Progress output of the training loop: a tqdm bar (phase, loss, held-out accuracy) and log lines."""

from __future__ import annotations

from tqdm import tqdm


class Bar:
    """A tqdm bar that shows the phase, the loss and the last held-out accuracy; redraws at most once a second."""

    def __init__(self, total: int, initial: int):
        self._bar = tqdm(total=total, initial=initial, desc="train", dynamic_ncols=True, mininterval=1.0)
        self._step = initial

    def show(self, step: int, phase: str, metrics: dict, last_eval: dict) -> None:
        postfix = {"phase": phase, "loss": f"{float(metrics['loss']):.3f}"}
        if "accuracy" in last_eval:
            postfix["acc"] = f"{last_eval['accuracy']:.3f}"
        self._bar.set_postfix(postfix, refresh=False)  # no redraw here: update() redraws
        self._bar.update(step - self._step)
        self._step = step

    def note(self, msg: str) -> None:
        """A line above the bar (kept in the scrollback)."""
        self._bar.write(msg)

    def close(self) -> None:
        self._bar.close()


class NoBar:
    def show(self, step: int, phase: str, metrics: dict, last_eval: dict) -> None:
        pass

    def note(self, msg: str) -> None:
        print(msg, flush=True)

    def close(self) -> None:
        pass


def log(enabled: bool, msg: str) -> None:
    if enabled:
        print(msg, flush=True)
