"""scripts/launch_tpu.sh: valid bash; its --dry-run prints the gcloud commands (create, setup on every
worker, the same training command on every worker) and bad usage fails with one clear line."""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "scripts", "launch_tpu.sh")
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(*args):
    return subprocess.run(["bash", SCRIPT, *args], capture_output=True, text=True, timeout=30, cwd=ROOT)


def test_script_is_valid_bash():
    assert subprocess.run(["bash", "-n", SCRIPT], capture_output=True, timeout=30).returncode == 0


def test_dry_run_prints_create_setup_and_the_same_train_command_on_all_workers():
    out = _run(
        "--name", "r1", "--zone", "us-central2-b", "--accelerator-type", "v4-16", "--create",
        "--repo", "https://example.com/jaxrl_reason.git", "--dry-run",
        "--", "--config", "configs/default.py", "--workdir", "/mnt/shared/run", "--config.mesh.fsdp=2",
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 3
    assert lines[0].startswith("gcloud compute tpus tpu-vm create r1 --zone us-central2-b --accelerator-type v4-16")
    assert lines[1].startswith("gcloud compute tpus tpu-vm ssh r1 --zone us-central2-b --worker=all --command")
    assert "git\\ clone" in lines[1] and "jax\\[tpu\\]" in lines[1]
    assert "--worker=all" in lines[2] and "JAXRL_REASON_DISTRIBUTED=1" in lines[2]
    assert "python3\\ -m\\ jaxrl_reason.train" in lines[2] and "--config.mesh.fsdp=2" in lines[2]
    # without --create and setup: only the training command
    out = _run("--name", "r1", "--zone", "z", "--no-setup", "--dry-run", "--", "--config", "c.py", "--workdir", "w")
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 1


def test_bad_usage_fails_with_one_line():
    for args, msg in (
        (("--zone", "z", "--dry-run", "--", "--config", "c"), "--name and --zone are required"),
        (("--name", "n", "--zone", "z", "--dry-run", "--", "--config", "c"), "--repo GIT_URL is required"),
        (("--name", "n", "--zone", "z", "--no-setup", "--dry-run"), "give the training arguments"),
        (("--bogus",), "unknown option --bogus"),
    ):
        out = _run(*args)
        assert out.returncode == 2 and msg in out.stderr and out.stderr.count("\n") == 1, (args, out.stderr)
