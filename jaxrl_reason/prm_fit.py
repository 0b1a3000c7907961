"""Command line of PRM fitting: ``python -m jaxrl_reason.prm_fit --workdir DIR [--num_rollouts 8] [--steps 300]``.

The implementation (``jr.fit_prm``) is in :mod:`jaxrl_reason.prm_training`.
"""

import sys

from jaxrl_reason.prm_training import main

if __name__ == "__main__":
    sys.exit(main())
