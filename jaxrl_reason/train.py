"""Command line of the main job: ``python -m jaxrl_reason.train --config FILE --workdir DIR [--config.k=v]``.

The implementation (and the importable :func:`jaxrl_reason.training.train`) is in
:mod:`jaxrl_reason.training`. On a CPU the run uses 8 fake CPU devices (one mesh over all cores) unless
``XLA_FLAGS`` is set; the flag is set by the package import (:mod:`jaxrl_reason._xla_setup`), which runs
before this module and before jax is imported.
"""

import sys

from jaxrl_reason.training import main

if __name__ == "__main__":
    sys.exit(main())
