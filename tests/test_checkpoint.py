"""Real Orbax checkpoints on disk: round trip, keep-N, a kill -9 mid-write, plain-Orbax restore."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest

from jaxrl_reason.run.checkpoint import Checkpointer


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
        from jaxrl_reason.run.checkpoint import Checkpointer
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
