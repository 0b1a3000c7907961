#!/usr/bin/env python
"""Wrapper: ``python scripts/evaluate.py --workdir DIR [--method greedy|sample|mcts]``."""

import sys

from jaxrl_reason.evaluation.cli import main

if __name__ == "__main__":
    sys.exit(main())
