"""Command line of held-out evaluation: ``python -m jaxrl_reason.evaluate --workdir DIR [--method ...]``.

The implementation (``jr.Agent``, ``jr.evaluate``) is in :mod:`jaxrl_reason.evaluation`.
"""

import sys

from jaxrl_reason.evaluation import main

if __name__ == "__main__":
    sys.exit(main())
