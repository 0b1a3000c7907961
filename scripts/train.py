#!/usr/bin/env python
"""Wrapper: ``python scripts/train.py --config configs/default.py --workdir DIR [--config.key=value ...]``."""

import sys

from jaxrl_reason.training.cli import main

if __name__ == "__main__":
    sys.exit(main())
