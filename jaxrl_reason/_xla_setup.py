"""Process set-up that must happen before jax is imported (no jax import here).

The command lines (``python -m jaxrl_reason.train``, ``.evaluate``, ``.prm_fit``) call
:func:`set_default_cpu_devices` before they import anything that imports jax: on a CPU-only machine one
JAX CPU device keeps only one core busy, while 8 fake CPU devices (``--xla_force_host_platform_device_count=8``)
with the batch sharded over the ``data`` mesh axis use them all (docs/BENCHMARKS.md). The flag only shapes
the CPU host platform, so it is harmless where a GPU/TPU is the default backend. It is added only when the
user has not set ``XLA_FLAGS`` and ``JAX_PLATFORMS`` does not exclude the CPU; ``JAXRL_REASON_CPU_DEVICES=N``
changes N (``1`` turns it off). Importing ``jaxrl_reason`` as a library changes nothing.
"""

from __future__ import annotations

import os
import sys

CPU_DEVICES_ENV = "JAXRL_REASON_CPU_DEVICES"
DEFAULT_CPU_DEVICES = 8


def set_default_cpu_devices(environ=None) -> bool:
    """Adds ``--xla_force_host_platform_device_count`` to ``XLA_FLAGS`` if allowed; returns whether it did."""
    environ = os.environ if environ is None else environ
    if "jax" in sys.modules or environ.get("XLA_FLAGS"):
        return False
    platforms = environ.get("JAX_PLATFORMS", "")
    if platforms and "cpu" not in platforms.split(","):
        return False
    n = int(environ.get(CPU_DEVICES_ENV, DEFAULT_CPU_DEVICES))
    if n <= 1:
        return False
    environ["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={n}"
    return True
