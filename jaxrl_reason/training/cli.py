"""Command line of the main job: ``python -m jaxrl_reason.train --config FILE --workdir DIR [--config.k=v ...]``."""

from __future__ import annotations

import argparse
import sys

from jaxrl_reason.config import ConfigError, load_config
from jaxrl_reason.run.checkpoint import CheckpointError
from jaxrl_reason.training.loop import train
from jaxrl_reason.training.state import TrainingError

_DOC = "The main job: imitation warm start, then the run's RL algorithm, with checkpoints and evaluation."


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """``--config PATH --workdir DIR [--config.key=value | --config.key value ...]``."""
    parser = argparse.ArgumentParser(prog="python -m jaxrl_reason.train", description=_DOC)
    parser.add_argument("--config", required=True, help="config file, e.g. configs/default.py")
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics, plots)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args, rest = parser.parse_known_args(argv)
    overrides, i = [], 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--config."):
            parser.error(f"unrecognized argument {item!r} (overrides look like --config.total_steps=100)")
        item = item[len("--config.") :]
        if "=" not in item and i + 1 < len(rest):
            item, i = f"{item}={rest[i + 1]}", i + 1
        overrides.append(item)
        i += 1
    return args, overrides


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        config = load_config(args.config, overrides)
        train(config, args.workdir, progress=not args.no_progress)
    except (ConfigError, TrainingError, CheckpointError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    return 0
