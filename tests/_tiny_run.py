"""One tiny trained run shared by the distillation, PRM and sweep tests (trained once per session, removed at exit)."""

import atexit
import functools
import shutil
import tempfile

from tests.test_train import tiny_config


@functools.lru_cache(maxsize=1)
def tiny_run() -> str:
    """A workdir with a 6-step SFT run of 1-digit addition (a real checkpoint)."""
    from jaxrl_reason.training.loop import train

    workdir = tempfile.mkdtemp(prefix="jaxrl_reason_tiny_run_")
    atexit.register(shutil.rmtree, workdir, ignore_errors=True)
    config = tiny_config(algorithm="none", total_steps=6, sft__steps=6, checkpoint_every=6, eval_every=6)
    config.optim.learning_rate = 3e-3
    train(config, workdir, progress=False)
    return workdir
