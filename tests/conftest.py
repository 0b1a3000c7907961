"""Test set-up: CPU only, 8 fake CPU devices (must be set before jax is imported), and JAX's persistent
compilation cache shared by the test processes.

Many tests compile the same functions again: a resume test runs the same training command two or three
times (each a fresh process), and tests build the same small models. The persistent cache (keyed by the
computation, the JAX/XLA versions and the flags, so a stale entry is never used) turns those compiles into
reads. It is set through the environment, so xdist workers and the training subprocesses the tests start
share it; an unreadable entry is recompiled (JAX warns). ``JAX_COMPILATION_CACHE_DIR=""`` turns it off.
"""

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8").strip()
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxrl_reason_tests_jax_cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")  # small compiles are not worth a file
