"""Command line of the main job: ``python -m jaxrl_reason.train --config FILE --workdir DIR [--config.k=v]``.

The implementation (and the importable :func:`jaxrl_reason.training.train`) is in
:mod:`jaxrl_reason.training`.
"""

import sys

from jaxrl_reason.training import main

if __name__ == "__main__":
    sys.exit(main())
