"""Real Orbax checkpoints on disk: round trip, keep-N, a kill -9 mid-write, plain-Orbax restore, read-only
opening, failed saves and damaged checkpoints."""

import os
import shutil
import subprocess
import sys
import textwrap
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxrl_reason.run.checkpoint import Checkpointer, CheckpointError


def _state(seed: int, n: int = 64):
    params = {"w": jax.random.normal(jax.random.PRNGKey(seed), (n, n)), "b": jnp.arange(n, dtype=jnp.float32)}
    opt = optax.adamw(1e-3)
    return {"params": params, "opt_state": opt.init(params), "step": jnp.int32(seed), "key": jax.random.PRNGKey(7)}


def _equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    return len(la) == len(lb) and all(np.array_equal(x, y) for x, y in zip(la, lb, strict=True))


def test_roundtrip_keeps_optax_structure_and_meta(tmp_path):
    ck = Checkpointer(tmp_path, max_to_keep=2)
    for step in (1, 2, 3):
        ck.save(step, _state(step), {"env_id": "addition-v0", "step": step})
    ck.wait()
    assert ck.all_steps() == [2, 3]  # keep-N
    restored, meta = ck.restore(jax.eval_shape(lambda: _state(0)))
    assert meta == {"env_id": "addition-v0", "step": 3}
    assert _equal(restored, _state(3))
    assert jax.tree.structure(restored) == jax.tree.structure(_state(0))  # optax states, not lists
    assert ck.restore_meta(2)["step"] == 2
    with pytest.raises(FileNotFoundError, match="step 9"):
        ck.restore(_state(0), step=9)
    ck.close()


def test_empty_workdir_has_no_latest_step(tmp_path):
    ck = Checkpointer(tmp_path)
    assert ck.latest_step() is None
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        ck.restore_meta()


def test_plain_orbax_restores_params_without_project_code(tmp_path):
    with Checkpointer(tmp_path) as ck:
        ck.save(5, _state(5), {"env_id": "x"})
    # Plain Orbax, no jaxrl_reason code: the state item is a standard pytree checkpoint.
    raw = ocp.StandardCheckpointer().restore(os.path.join(tmp_path, "checkpoints", "5", "state"))
    np.testing.assert_array_equal(raw["params"]["w"], _state(5)["params"]["w"])


def test_kill_during_write_leaves_previous_checkpoint_restorable(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        import jax, jax.numpy as jnp
        from jaxrl_reason.run.checkpoint import CheckpointError, Checkpointer
        ck = Checkpointer({str(tmp_path)!r})
        ck.save(1, {{"w": jnp.ones((64, 64))}}, {{"step": 1}})
        ck.wait()
        big = {{f"w{{i}}": jnp.full((512, 256), i, jnp.float32) for i in range(48)}}  # ~25 MB
        ck.save(2, big, {{"step": 2}})  # async: returns while the write is under way
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=300)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    left = os.listdir(os.path.join(tmp_path, "checkpoints"))
    assert any(name.startswith("2.") and "tmp" in name for name in left), left  # killed mid-write
    ck = Checkpointer(tmp_path)
    assert ck.all_steps() == [1]  # the half-written step 2 never becomes a checkpoint
    state, meta = ck.restore({"w": jnp.zeros((64, 64))})
    assert meta == {"step": 1} and float(state["w"].sum()) == 64 * 64


# --- read-only opening, failed saves, damaged checkpoints -------------------------------------------------------


def _small(step: int):
    return {"w": jax.random.normal(jax.random.PRNGKey(step), (32, 32)), "b": jnp.full((4,), step, jnp.float32)}


def _finished_run(workdir, steps=(2, 4, 6)):
    with Checkpointer(workdir, max_to_keep=len(steps)) as ck:
        for step in steps:
            ck.save(step, _small(step), {"step": step})
    return os.path.join(workdir, "checkpoints")


def _snapshot(root):
    """Every path under `root` with its size and modification time."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.stat(os.path.join(dirpath, name))
            out[os.path.relpath(os.path.join(dirpath, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def test_read_only_leaves_a_live_runs_temporary_directory_alone(tmp_path):
    ckdir = _finished_run(tmp_path)
    os.makedirs(os.path.join(ckdir, "8.orbax-checkpoint-tmp", "state"))  # a live run's in-flight save
    before = _snapshot(tmp_path)
    with Checkpointer(tmp_path, read_only=True) as ck:
        assert ck.all_steps() == [2, 4, 6] and ck.latest_good_step() == 6
        state, meta = ck.restore(jax.eval_shape(lambda: _small(0)))
        assert meta == {"step": 6} and _equal(state, _small(6))
        assert ck.restore_meta(4) == {"step": 4}
        with pytest.raises(CheckpointError, match="read_only"):
            ck.save(9, _small(9), {"step": 9})
    assert _snapshot(tmp_path) == before  # nothing created, renamed, deleted or touched
    with Checkpointer(tmp_path) as ck:  # the writer (a resumed run) does clean it up, at its first save
        ck.save(7, _small(7), {"step": 7})
    assert not os.path.exists(os.path.join(ckdir, "8.orbax-checkpoint-tmp"))


def test_read_only_on_a_path_without_a_run_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError, match="no run at .*does not exist"):
        Checkpointer(tmp_path / "mistyped", read_only=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no checkpoints/ directory"):
        Checkpointer(tmp_path / "empty", read_only=True)
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(FileNotFoundError, match="is a file"):
        Checkpointer(tmp_path / "a_file", read_only=True)
    assert sorted(os.listdir(tmp_path)) == ["a_file", "empty"] and os.listdir(tmp_path / "empty") == []


def test_writer_rejects_a_file_where_the_run_or_its_checkpoints_must_be(tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(CheckpointError, match="a_file is a file"):
        Checkpointer(tmp_path / "a_file")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "checkpoints").write_text("x")
    with pytest.raises(CheckpointError, match="cannot create the checkpoint directory"):
        Checkpointer(tmp_path / "run")
    assert issubclass(CheckpointError, RuntimeError)


def test_unwritable_checkpoint_directory_fails_the_next_save_at_once(tmp_path):
    ck = Checkpointer(tmp_path, max_to_keep=2)
    ck.save(1, _small(1), {"step": 1})
    ck.save(2, _small(2), {"step": 2})
    ck.wait()
    os.rename(ck.directory, ck.directory + "_moved")  # the directory vanishes under a running writer:
    open(ck.directory, "w").close()  # a file where it must be (chmod would not stop root)
    start = time.monotonic()
    with pytest.raises(CheckpointError, match="cannot save checkpoint step 3: .*checkpoints is not writable"):
        ck.save(3, _small(3), {"step": 3})
    assert time.monotonic() - start < 5
    ck.close()
    os.remove(ck.directory)
    os.rename(ck.directory + "_moved", ck.directory)
    with Checkpointer(tmp_path, read_only=True) as ck:
        assert ck.all_steps() == [1, 2]
        assert _equal(ck.restore(jax.eval_shape(lambda: _small(0)))[0], _small(2))


def test_async_write_failure_stops_the_run_with_one_error_naming_the_step(tmp_path):
    # The disk fills up mid-write (a file-size limit): the background write fails; the next save raises.
    script = textwrap.dedent(
        f"""
        import resource, signal, sys
        sys.path.insert(0, {os.getcwd()!r})
        import jax, jax.numpy as jnp
        from jaxrl_reason.run.checkpoint import Checkpointer, CheckpointError
        ck = Checkpointer({str(tmp_path)!r}, max_to_keep=1)
        ck.save(1, {{"w": jnp.ones((8, 8))}}, {{"step": 1}})
        ck.wait()
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000))
        big = {{"w": jax.random.normal(jax.random.PRNGKey(0), (256, 256))}}  # 256 KB
        ck.save(2, big, {{"step": 2}})  # async: returns before the write fails
        try:
            ck.save(3, big, {{"step": 3}})
        except CheckpointError as e:
            print("CAUGHT", e)
        ck.close()
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=120, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "CAUGHT saving checkpoint step 2 " in proc.stdout and "File too large" in proc.stdout, proc.stdout
    assert "checkpoints/1" in proc.stdout  # the last complete checkpoint, named
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    with Checkpointer(tmp_path, read_only=True) as ck:
        assert ck.all_steps() == [1] and ck.restore_meta() == {"step": 1}


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _damage(step_dir, how):
    if how == "data":  # the largest array file of the step's OCDBT store
        files = [os.path.join(d, f) for d, _, fs in os.walk(os.path.join(step_dir, "state")) for f in fs]
        _truncate(max((f for f in files if os.sep + "d" + os.sep in f), key=os.path.getsize))
    elif how == "metadata":
        _truncate(os.path.join(step_dir, "state", "_METADATA"))
    elif how == "no_state":
        shutil.rmtree(os.path.join(step_dir, "state"))
    elif how == "meta":
        _truncate(os.path.join(step_dir, "meta", "metadata"))
    elif how == "step_metadata":
        _truncate(os.path.join(step_dir, "_CHECKPOINT_METADATA"))


@pytest.mark.parametrize(
    "how,why",
    [
        ("data", "state/ array data is unreadable"),
        ("metadata", "state/_METADATA is unreadable"),
        ("no_state", "state/ directory is missing"),
        ("meta", "meta/metadata is unreadable"),
        ("step_metadata", "_CHECKPOINT_METADATA is unreadable"),
    ],
)
def test_damaged_latest_checkpoint_falls_back_to_the_newest_good_one(tmp_path, caplog, how, why):
    ckdir = _finished_run(tmp_path)
    _damage(os.path.join(ckdir, "6"), how)
    with Checkpointer(tmp_path, read_only=True) as ck, caplog.at_level("WARNING", logger="jaxrl_reason.run.checkpoint"):
        assert ck.latest_step() == 6  # complete as Orbax sees it; not checked for damage
        assert ck.restore_meta() == {"step": 4}
        state, meta = ck.restore(jax.eval_shape(lambda: _small(0)))
        assert meta == {"step": 4} and _equal(state, _small(4))
        assert ck.latest_good_step() == 4
        with pytest.raises(CheckpointError, match=f"checkpoints/6 is damaged: .*{why}"):
            ck.restore(_small(0), step=6)
    warned = [r.getMessage() for r in caplog.records if r.name == "jaxrl_reason.run.checkpoint"]
    assert len(warned) == 1 and "checkpoints/6 is damaged" in warned[0] and why in warned[0], warned


def test_every_checkpoint_damaged_is_one_clear_error(tmp_path):
    ckdir = _finished_run(tmp_path, steps=(2, 4))
    _damage(os.path.join(ckdir, "2"), "metadata")
    _damage(os.path.join(ckdir, "4"), "data")
    with Checkpointer(tmp_path) as ck:  # the writer (a resuming run) checks the same way
        with pytest.raises(CheckpointError, match=r"no readable checkpoint .*step 4: state/ array.*step 2: state/_MET"):
            ck.restore_meta()
