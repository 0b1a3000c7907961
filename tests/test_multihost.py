"""Two local processes (4 CPU devices each, jax.distributed over 127.0.0.1) train together on one
(8, 1) mesh, checkpoint (every process writes its shards), are killed, resume, and end with the same
params as a single process with 8 devices running the same config."""

import json
import os
import socket
import subprocess
import sys

import jax
import numpy as np

from jaxrl_reason.run.checkpoint import Checkpointer
from jaxrl_reason.training.loop import KILL_AT_STEP_ENV, train

from .test_train import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT_S = 420

WORKER = """
import os, sys
os.environ["JAX_PLATFORMS"] = "cpu"
os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
sys.path.insert(0, {root!r})
from tests.test_multihost import multihost_config
from jaxrl_reason.training.loop import train
process_id, port, workdir = int(sys.argv[1]), sys.argv[2], sys.argv[3]
config = multihost_config()
config.distributed.coordinator_address = "127.0.0.1:" + port
config.distributed.num_processes = 2
config.distributed.process_id = process_id
train(config, workdir, progress=False)
"""


def multihost_config():
    """4 steps: 3 SFT (the step-2 checkpoint falls inside SFT), then 1 self-play + RL; held-out eval at the end."""
    return tiny_config(
        total_steps=4,
        sft__steps=3,
        algorithm="alphazero",
        sft__batch_size=8,
        checkpoint_every=2,
        eval_every=100,
        selfplay__num_episodes=8,
        selfplay__batch_size=8,
        selfplay__num_simulations=2,
        selfplay__top_k=2,
        selfplay__max_depth=2,
        log_every=1,
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch_pair(script, workdir, env) -> list[subprocess.CompletedProcess]:
    port = str(_free_port())
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), str(i), port, str(workdir)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, _ = p.communicate(timeout=TIMEOUT_S)
            outs.append((p.returncode, out.decode()[-3000:]))
    finally:
        for p in procs:  # never leave a worker behind (e.g. one waiting for a dead peer)
            if p.poll() is None:
                p.kill()
                p.wait()
    return outs


def test_two_processes_train_checkpoint_resume_and_match_one_process(tmp_path):
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(root=ROOT))
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", KILL_AT_STEP_ENV, "JAXRL_REASON_DISTRIBUTED")}
    env["JAX_COMPILATION_CACHE_DIR"] = str(tmp_path / "jax_cache")  # the resume reuses the first pair's compiles
    env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    workdir = tmp_path / "multi"
    # 1) both processes stop hard right after the step-2 checkpoint (mid-SFT)
    outs = _launch_pair(script, workdir, {**env, KILL_AT_STEP_ENV: "2"})
    # Process 0 kills itself; process 1 either does too, or (when process 0, which hosts the
    # coordination service, dies first) is aborted by JAX's distributed runtime: a real peer crash.
    assert outs[0][0] == -9 and outs[1][0] in (-9, -6), outs
    assert not any("done:" in out for _, out in outs)
    assert "2 process(es)" in outs[0][1] and "mesh {'data': 8, 'fsdp': 1}" in outs[0][1]
    # 2) both resume from it and finish (self-play + RL across processes)
    outs = _launch_pair(script, workdir, env)
    assert [rc for rc, _ in outs] == [0, 0], outs
    assert f"resumed from {workdir}/checkpoints/2" in outs[0][1] and "done:" in outs[0][1]
    assert "done:" not in outs[1][1]  # only process 0 reports
    # only process 0 wrote metrics: one line per step and phase (no duplicates)
    rows = [json.loads(x) for x in (workdir / "metrics.jsonl").read_text().splitlines()]
    # (the held-out evaluation at the end of imitation, then the final one)
    expected = [(1, "sft"), (2, "sft"), (3, "sft"), (3, "eval"), (4, "alphazero"), (4, "eval")]
    assert [(r["step"], r["phase"]) for r in rows] == expected
    # 3) one process, 8 devices, same config
    train(multihost_config(), str(tmp_path / "single"), progress=False)

    def final_params(w):
        with Checkpointer(w) as ck:
            assert ck.all_steps() == [2, 4]
            from jaxrl_reason.run.agent import Agent

            return jax.device_get(Agent.load(str(w)).params)

    for a, b in zip(
        jax.tree.leaves(final_params(workdir)), jax.tree.leaves(final_params(tmp_path / "single")), strict=True
    ):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
