"""Command line: ``python -m jaxrl_reason.prm_fit ...`` (fit a process reward model to a run).

On a CPU the command uses 8 fake CPU devices (one mesh over all cores) unless ``XLA_FLAGS`` is set: the flag
is set here, before jax is first imported (:mod:`jaxrl_reason._xla_setup`).
"""

import sys

from jaxrl_reason import _xla_setup

if __name__ == "__main__":
    _xla_setup.set_default_cpu_devices()
    from jaxrl_reason.evaluation.prm_fit import main  # after the device flag: this import brings in jax

    sys.exit(main())
