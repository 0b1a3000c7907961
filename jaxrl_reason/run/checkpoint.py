"""Orbax checkpointing of the whole train state, with the run's metadata saved beside it as JSON.

Layout: ``<workdir>/checkpoints/<step>/{state,meta}``. Saves are asynchronous (training continues
while the write finishes) and atomic: Orbax writes into a temporary directory and renames it when
complete, so a process killed mid-write leaves the previous checkpoint as the latest one. Only
``jax.Array`` pytrees and JSON are written; nothing is pickled.

Two ways to open a run:

* the writer (``read_only=False``, the training loop): creates ``checkpoints/``, checks it can write
  there, deletes the temporary directories a killed run left behind, and raises :class:`CheckpointError`
  as soon as a save fails (the previous checkpoints stay as they were);
* a reader (``read_only=True``: evaluation, warm starts, tools): creates, renames and deletes nothing,
  so it is safe beside a live training run whose in-flight save sits in a temporary directory.

Damaged checkpoints (a truncated array file, an unreadable ``_METADATA``, a missing ``state/``) are
found by :meth:`Checkpointer.check`, which reads every byte of the step's array store; restoring "the
latest" skips damaged steps with one warning each and takes the newest good one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp
import tensorstore as ts

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint could not be written, or a checkpoint asked for (or every one of a run's) is damaged."""


class _DropMessage(logging.Filter):
    def __init__(self, prefix: str):
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


class _NoOrbaxTracebacks(logging.Filter):
    """Keeps Orbax's one-line error logs but drops their tracebacks (a failed async save logs ~300 lines of
    them from several threads); :class:`CheckpointError` names the failure instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and f"{os.sep}orbax{os.sep}" in record.pathname:
            record.exc_info, record.exc_text = None, None
        return True


_ORBAX_TRACEBACKS = _NoOrbaxTracebacks()


@contextlib.contextmanager
def _quiet_absl(prefix: str):
    """Hides one routine Orbax log line (it warns on every read-only open)."""
    logger, drop = logging.getLogger("absl"), _DropMessage(prefix)
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0][:1000] if text else ''}"


def _read_json(path: str) -> dict:
    with open(path) as f:
        return json.load(f)


def _read_array_store(state_dir: str) -> None:
    """Reads every key of an OCDBT array store (the bytes only; nothing decoded, nothing written)."""
    kv = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir}/"}).result()
    keys = kv.list().result()
    if not keys:
        raise ValueError("the array store holds no arrays")
    for key in keys:
        kv.read(key).result()


class Checkpointer:
    """Saves and restores ``(state pytree, meta dict)`` pairs under ``<workdir>/checkpoints``.

    Args:
      workdir: the run's directory.
      max_to_keep: how many recent checkpoints to keep (writer only).
      async_save: write in a background thread (call :meth:`wait` before reading them back).
      read_only: open an existing run for reading: nothing is created or deleted, :meth:`save` raises.

    Raises:
      FileNotFoundError: `read_only` and `workdir` is not a run directory with ``checkpoints/``.
      CheckpointError: not `read_only` and ``<workdir>/checkpoints`` cannot be created or written
        (e.g. `workdir` is a file).
    """

    def __init__(
        self,
        workdir: str | os.PathLike,
        *,
        max_to_keep: int = 3,
        async_save: bool = True,
        read_only: bool = False,
    ):
        self.workdir = os.path.abspath(os.fspath(workdir))
        self.directory = os.path.join(self.workdir, "checkpoints")
        self.read_only = read_only
        self._damage: dict[int, str | None] = {}  # step -> why it cannot be read (None: good), checked once
        self._pending: int | None = None  # the step of the save that may still be in flight
        self._failed: str | None = None  # a save failure already raised to the caller
        if read_only:
            self._open_reader()
            options = ocp.CheckpointManagerOptions(
                read_only=True, create=False, cleanup_tmp_directories=False, max_to_keep=None, save_interval_steps=0
            )
            with _quiet_absl("Given directory is read only"):
                self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())
        else:
            self._open_writer()
            options = ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                create=True,
                enable_async_checkpointing=async_save,
                cleanup_tmp_directories=True,
                # a step directory that cannot be made fails in save(), not in a thread that then waits 5 min
                async_options=ocp.AsyncOptions(create_directories_asynchronously=False),
            )
            self._manager = ocp.CheckpointManager(self.directory, options=options, item_handlers=_handlers())
            logging.getLogger("absl").addFilter(_ORBAX_TRACEBACKS)

    def _open_reader(self) -> None:
        if not os.path.exists(self.workdir):
            raise FileNotFoundError(f"no run at {self.workdir}: the directory does not exist")
        if not os.path.isdir(self.workdir):
            raise FileNotFoundError(f"no run at {self.workdir}: it is a file (expected a run directory)")
        if not os.path.isdir(self.directory):
            raise FileNotFoundError(f"no run at {self.workdir}: it has no checkpoints/ directory")

    def _open_writer(self) -> None:
        if os.path.exists(self.workdir) and not os.path.isdir(self.workdir):
            raise CheckpointError(f"workdir {self.workdir} is a file; expected a run directory (or a new path)")
        try:
            os.makedirs(self.directory, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create the checkpoint directory {self.directory}: {e}") from None
        self._check_writable("open the run")

    def _check_writable(self, what: str) -> None:
        try:
            fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=self.directory)
            os.close(fd)
            os.remove(probe)
        except OSError as e:
            raise CheckpointError(
                f"cannot {what}: {self.directory} is not writable ({e}); {self._last_good_text()}"
            ) from None

    def _last_good_text(self) -> str:
        steps = self._finished_steps_on_disk()
        if not steps:
            return "there is no earlier checkpoint"
        return f"the last complete checkpoint is {self.directory}/{steps[-1]}"

    def _finished_steps_on_disk(self) -> list[int]:
        try:
            names = os.listdir(self.directory)
        except OSError:
            return []
        return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(os.path.join(self.directory, n)))

    def latest_step(self) -> int | None:
        """The newest complete (finalized) checkpoint's step, or None. Not checked for damage: use
        :meth:`latest_good_step` for the step that :meth:`restore` and :meth:`restore_meta` take."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        """Steps of the complete checkpoints (in-flight saves, in temporary directories, are not listed)."""
        return sorted(self._manager.all_steps())

    def latest_good_step(self) -> int | None:
        """The newest step whose checkpoint :meth:`check` finds readable; None if the run has none at all.

        Each damaged step skipped is logged once as a warning naming its path and the damage.

        Raises:
          CheckpointError: the run has checkpoints but every one is damaged.
        """
        if not self.read_only:
            self.wait()
        steps = self.all_steps()
        for step in reversed(steps):
            fresh = step not in self._damage
            reason = self._why_damaged(step)
            if reason is None:
                return step
            if fresh:
                log.warning("checkpoint %s/%d is damaged (%s); skipping it", self.directory, step, reason)
        if not steps:
            return None
        found = "; ".join(f"step {s}: {self._damage[s]}" for s in reversed(steps))
        raise CheckpointError(f"no readable checkpoint under {self.directory} ({found})")

    def check(self, step: int) -> None:
        """Raises :class:`CheckpointError` naming the path and the damage if `step` cannot be restored.

        Reads every byte of the step's array store (about the cost of a restore, without decoding) and
        parses its JSON files; the answer is kept for this object's lifetime.
        """
        reason = self._why_damaged(int(step))
        if reason is not None:
            raise CheckpointError(f"checkpoint {self.directory}/{step} is damaged: {reason}")

    def _why_damaged(self, step: int) -> str | None:
        if step not in self._damage:
            self._damage[step] = self._inspect(os.path.join(self.directory, str(step)))
        return self._damage[step]

    @staticmethod
    def _inspect(path: str) -> str | None:
        for sub in ("state", "meta"):
            if not os.path.isdir(os.path.join(path, sub)):
                return f"its {sub}/ directory is missing"
        for rel in ("_CHECKPOINT_METADATA", "state/_METADATA", "meta/metadata"):
            if rel == "_CHECKPOINT_METADATA" and not os.path.exists(os.path.join(path, rel)):
                continue
            try:
                _read_json(os.path.join(path, rel))
            except (OSError, ValueError) as e:
                return f"{rel} is unreadable ({_first_line(e)})"
        if _uses_ocdbt(os.path.join(path, "state")):
            try:
                _read_array_store(os.path.join(path, "state"))
            except Exception as e:  # noqa: BLE001 - tensorstore raises ValueError/OSError with a status text
                return f"state/ array data is unreadable ({_first_line(e)})"
        return None

    def save(self, step: int, state: Any, meta: dict) -> None:
        """Starts an (async) save of `state` and `meta` (JSON-able) at `step`.

        Raises:
          CheckpointError: the checkpoint directory is not writable, or this or an earlier async save
            failed; the checkpoints already complete on disk are kept.
        """
        step = int(step)
        if self.read_only:
            raise CheckpointError(f"{self.directory} was opened read_only=True; cannot save step {step}")
        self.wait()  # an earlier save's error surfaces here, naming that step
        self._check_writable(f"save checkpoint step {step}")
        self._damage.pop(step, None)
        self._pending = step
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                force=True,
            )
        except Exception as e:  # noqa: BLE001 - any Orbax/OS failure means this checkpoint is lost
            self._fail(step, e)

    def _fail(self, step: int | None, e: BaseException):
        self._pending = None
        self._failed = (
            f"saving checkpoint step {step} to {self.directory} failed ({_first_line(e)}); {self._last_good_text()}"
        )
        raise CheckpointError(self._failed) from None

    def wait(self) -> None:
        """Blocks until pending async saves are on disk.

        Raises:
          CheckpointError: a pending save failed.
        """
        try:
            self._manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001 - the async write failed
            self._fail(self._pending, e)
        self._pending = None

    def restore(self, like: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restores ``(state, meta)`` at `step` (default: :meth:`latest_good_step`) into the structure of `like`.

        `like` may be real arrays or ``jax.ShapeDtypeStruct``s (e.g. from ``jax.eval_shape``);
        shardings on it are honoured.

        Raises:
          FileNotFoundError: the run has no checkpoint (at `step`).
          CheckpointError: `step` is damaged, or (`step` None) every checkpoint is.
          ValueError: from Orbax, when `like`'s tree differs from the saved one.
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
        (whatever algorithm wrote it), placed with `sharding` (default: the default device)."""
        step = self._require_step(step)
        tree = self._manager.item_metadata(step)["state"].tree
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=sharding), tree)
        out = self._manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(target)))
        return out["state"]["params"]

    def restore_meta(self, step: int | None = None) -> dict:
        """Only the JSON metadata of a checkpoint (config, env id, ...); the same step :meth:`restore` takes."""
        step = self._require_step(step)
        out = self._manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def close(self) -> None:
        """Waits for pending saves and closes. Raises :class:`CheckpointError` for a failed save not yet
        raised by :meth:`save` or :meth:`wait` (so a run's last checkpoint is never lost silently)."""
        if self._failed is None:
            self.wait()
            self._manager.close()
            return
        with contextlib.suppress(Exception):  # already reported; close what can be closed
            self._manager.close()

    def _require_step(self, step: int | None) -> int:
        if step is None:
            step = self.latest_good_step()
            if step is None:
                raise FileNotFoundError(f"no checkpoint under {self.directory}")
            return step
        if step not in self._manager.all_steps():
            raise FileNotFoundError(f"no checkpoint for step {step} under {self.directory}; have {self.all_steps()}")
        self.check(step)
        return int(step)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _handlers() -> dict:
    """The handlers of the two items of a checkpoint (so its metadata can be read without restoring it)."""
    return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def _uses_ocdbt(state_dir: str) -> bool:
    """Whether a saved pytree's arrays are in an OCDBT store (Orbax's default, and what this module writes)."""
    try:
        return bool(_read_json(os.path.join(state_dir, "_METADATA")).get("use_ocdbt", False))
    except (OSError, ValueError):
        return False
