"""Orbax checkpointing of the whole train state, with the run's metadata saved beside it as JSON.

Layout: ``<workdir>/checkpoints/<step>/{state,meta}``. Saves are asynchronous (training continues
while the write finishes) and atomic: Orbax writes into a temporary directory and renames it when
complete, so a process killed mid-write leaves the previous checkpoint as the latest one. Only
``jax.Array`` pytrees and JSON are written; nothing is pickled.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves and restores ``(state pytree, meta dict)`` pairs under ``<workdir>/checkpoints``.

    Args:
      workdir: the run's directory.
      max_to_keep: how many recent checkpoints to keep.
      async_save: write in a background thread (call :meth:`wait` before reading them back).
    """

    def __init__(
        self, workdir: str | os.PathLike, *, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False
    ):
        self.directory = os.path.join(os.path.abspath(os.fspath(workdir)), "checkpoints")
        if read_only and not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no run at {os.fspath(workdir)!r}: {self.directory} does not exist")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=None if read_only else max_to_keep,
            save_interval_steps=0 if read_only else 1,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,  # never delete what a live run is writing
        )
        handlers = {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=handlers)

    def latest_step(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts an (async) save of `state` and `meta` (JSON-able) at `step`."""
        self._manager.save(
            int(step),
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores ``(state, meta)`` at `step` (default: latest) into the structure of `like`.

        `like` may be real arrays or ``jax.ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``);
        shardings on it are honoured.
        """
        step = self._require_step(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, like)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()),
        )
        return out["state"], dict(out["meta"])

    def restore_params(self, step: int | None = None, *, sharding=None) -> Any:
        """Only the ``params`` of a saved train state, read with the tree layout stored in the checkpoint
        (whatever algorithm wrote it); arrays are placed with `sharding` (default: the saved one)."""
        step = self._require_step(step)
        tree = self._manager.item_metadata(step)["state"].tree

        def abstract(m):
            return jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding) if sharding is not None else m

        target = jax.tree.map(abstract, tree) if sharding is not None else tree
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return out["state"]["params"]

    def restore_meta(self, step: int | None = None) -> dict:
        """Only the JSON metadata of a checkpoint (config, env id, ...)."""
        step = self._require_step(step)
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def wait(self) -> None:
        """Blocks until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def _require_step(self, step: int | None) -> int:
        if step is None:
            step = self.latest_step()
        if step is None:
            raise FileNotFoundError(f"no checkpoint under {self.directory}")
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} under {self.directory}; have {self.all_steps()}")
        return int(step)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
