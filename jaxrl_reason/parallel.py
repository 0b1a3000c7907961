"""One code path over a device mesh: the mesh, shardings of the train state, multi-host start-up.

Every run lays its arrays out on a :class:`jax.sharding.Mesh` with two axes:

* ``data``: batch-like arrays (self-play env states, replay, SFT/RL batches) are split over it along
  their leading axis;
* ``fsdp``: parameters and optimizer state are split over it along one dimension that divides
  (chosen from the model's logical axis names, see :data:`LOGICAL_AXIS_RULES`), else replicated.

A plain machine gets a 1-device mesh and runs exactly the same jitted functions; an 8-device CPU
(``--xla_force_host_platform_device_count=8``), a GPU node or a TPU pod slice only change the mesh.
The jitted functions are compiled with explicit in/out shardings (XLA's SPMD partitioner splits the
updates); self-play runs each device's own episodes under ``jax.shard_map`` (:func:`map_examples`), each
episode with its own key. A sharded run computes the same function as a 1-device run: results agree to
float tolerance.

Multi-host: :func:`maybe_initialize_distributed` calls :func:`jax.distributed.initialize` when the
config (``distributed.*``) or the environment (``JAXRL_REASON_DISTRIBUTED=1``) asks for it, before
anything touches a device. Every process then runs the same program over the global mesh; host data
becomes a global array with :func:`host_batch_to_global` (each process materializes only the shards
of its own devices).
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

P = PartitionSpec

#: Mesh axis names, outermost first.
MESH_AXES = ("data", "fsdp")
#: Logical parameter axis names (see ``PolicyValueTransformer.logical_axes``) that may be split over the
#: ``fsdp`` mesh axis, in order of preference: a parameter is split along the first of its dimensions
#: named here whose size the ``fsdp`` axis divides; parameters with none are replicated.
LOGICAL_AXIS_RULES = (("embed", "fsdp"), ("mlp", "fsdp"), ("vocab", "fsdp"), ("heads", "fsdp"), ("kv", "fsdp"))
#: Set to 1 to call ``jax.distributed.initialize()`` with its automatic cluster detection (Cloud TPU, SLURM, ...).
DISTRIBUTED_ENV = "JAXRL_REASON_DISTRIBUTED"


# -- mesh ------------------------------------------------------------------------------------------
def mesh_shape(data: int = -1, fsdp: int = 1, *, num_devices: int | None = None) -> tuple[int, int]:
    """Resolves ``(data, fsdp)`` sizes against the device count; ``-1`` means "all remaining devices".

    Raises ValueError when the sizes do not multiply to the device count.
    """
    n = jax.device_count() if num_devices is None else num_devices
    sizes = {"data": int(data), "fsdp": int(fsdp)}
    free = [k for k, v in sizes.items() if v == -1]
    if len(free) > 1:
        raise ValueError(f"at most one mesh axis may be -1 (all remaining devices), got data={data}, fsdp={fsdp}")
    for k, v in sizes.items():
        if v == 0 or v < -1:
            raise ValueError(f"mesh.{k} must be a positive size or -1, got {v}")
    fixed = math.prod(v for v in sizes.values() if v != -1)
    if free:
        if n % fixed:
            raise ValueError(
                f"mesh sizes data={data}, fsdp={fsdp} do not divide the {n} devices: {fixed} does not divide {n}"
            )
        sizes[free[0]] = n // fixed
    if sizes["data"] * sizes["fsdp"] != n:
        raise ValueError(
            f"mesh data={sizes['data']} x fsdp={sizes['fsdp']} = {sizes['data'] * sizes['fsdp']} devices, "
            f"but {n} are available; use sizes whose product is {n} (or -1 for one axis)"
        )
    return sizes["data"], sizes["fsdp"]


def make_mesh(data: int = -1, fsdp: int = 1, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ``(data, fsdp)`` mesh over `devices` (default: all devices of all processes).

    ``-1`` for one axis takes all remaining devices. Adjacent devices share an ``fsdp`` group (the
    axis with the most traffic); with several processes, ``jax.devices()`` orders devices by process,
    so ``data`` spans processes.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(data, fsdp, num_devices=len(devices))
    return Mesh(np.asarray(devices, dtype=object).reshape(shape), MESH_AXES)


def mesh_from_config(config, *, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh a config asks for (``mesh.data``, ``mesh.fsdp``)."""
    return make_mesh(config.mesh.data, config.mesh.fsdp, devices=devices)


# -- shardings ---------------------------------------------------------------------------------------
def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_spec(shape: Sequence[int], mesh: Mesh, axis: str = "data") -> PartitionSpec:
    """``P(axis)`` over the leading dimension when the mesh axis divides it, else replicated."""
    size = mesh.shape[axis]
    if len(shape) and shape[0] % size == 0:
        return P(axis)
    return P()


def batch_sharding(tree: Any, mesh: Mesh) -> Any:
    """Shardings (same structure as `tree`) splitting every leaf's leading axis over ``data``."""
    return jax.tree.map(lambda x: NamedSharding(mesh, batch_spec(np.shape(x), mesh)), tree)


def param_spec(logical: PartitionSpec, shape: Sequence[int], mesh: Mesh) -> PartitionSpec:
    """Mesh spec of one parameter from its logical spec: one dimension over ``fsdp`` (see rules)."""
    size = mesh.shape["fsdp"]
    out: list[Any] = [None] * len(shape)
    if size > 1:
        names = tuple(logical) + (None,) * (len(shape) - len(logical))
        for name, axis in LOGICAL_AXIS_RULES:
            dims = [i for i, n in enumerate(names) if n == name and shape[i] % size == 0]
            if dims:
                out[dims[0]] = axis
                break
    return P(*out)


def param_shardings(model, params: Any, mesh: Mesh) -> Any:
    """NamedShardings of the params (real or abstract) from ``model.logical_axes()``."""
    logical = model.logical_axes()
    return jax.tree.map(
        lambda spec, p: NamedSharding(mesh, param_spec(spec, np.shape(p), mesh)),
        logical,
        params,
        is_leaf=lambda x: isinstance(x, PartitionSpec),
    )


def opt_state_shardings(tx, opt_state: Any, params_sharding: Any, mesh: Mesh) -> Any:
    """Optimizer state laid out like the params it mirrors (Adam moments); scalars replicated."""
    import optax

    try:
        return optax.tree_map_params(
            tx,
            lambda _, sharding: sharding,
            opt_state,
            params_sharding,
            transform_non_params=lambda _: replicated(mesh),
        )
    except ValueError:  # states optax cannot map (multi_transform's masked ones: LoRA): match by param path
        return _shardings_by_path(opt_state, params_sharding, mesh)


def _shardings_by_path(opt_state: Any, params_sharding: Any, mesh: Mesh) -> Any:
    """Each optimizer-state leaf whose key path ends with a param's path takes that param's sharding."""

    def keys(path) -> tuple:
        return tuple(getattr(p, "key", None) for p in path if hasattr(p, "key"))

    by_path = {keys(p): s for p, s in jax.tree_util.tree_flatten_with_path(params_sharding)[0]}

    def sharding(path, _):
        k = keys(path)
        hits = [by_path[k[i:]] for i in range(len(k)) if k[i:] in by_path]
        return hits[0] if hits else replicated(mesh)

    return jax.tree_util.tree_map_with_path(sharding, opt_state)


def state_shardings(state: Any, model, tx, mesh: Mesh) -> Any:
    """Shardings of a :class:`~jaxrl_reason.training.TrainState` (real or abstract).

    params / opt_state over ``fsdp``; the algorithm buffer over ``data`` (leading axis); step, key, counters replicated.
    """
    params = param_shardings(model, state.params, mesh)
    rep = replicated(mesh)
    return state.replace(
        params=params,
        opt_state=opt_state_shardings(tx, state.opt_state, params, mesh),
        step=rep,
        key=rep,
        buffer=batch_sharding(state.buffer, mesh),
        buffer_count=rep,
        ref_params=None if state.ref_params is None else params,  # GRPO/RLOO's frozen reference: like params
        actor=None if state.actor is None else {"params": (params,) * len(state.actor["params"]), "step": rep},
    )


def constrain_batch(tree: Any, mesh: Mesh | None) -> Any:
    """Inside jit: ask for `tree`'s leading axis to be split over ``data`` (no-op without a mesh)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, batch_sharding(tree, mesh))


# -- host data -> global arrays -----------------------------------------------------------------------
def host_batch_to_global(batch: Any, shardings: Any) -> Any:
    """Global arrays from a host-side batch that every process holds in full (numpy pytree).

    Each process copies only the slices of its own devices (``jax.make_array_from_callback``), so a
    deterministic batch (e.g. the SFT batch of step ``s``) needs no communication.
    """
    return jax.tree.map(
        lambda x, s: jax.make_array_from_callback(np.shape(x), s, lambda idx, x=x: np.asarray(x)[idx]),
        batch,
        shardings,
    )


def distributed_requested(config=None) -> bool:
    """Whether the config (``distributed.coordinator_address`` or ``distributed.enabled``) or the env asks
    for :func:`jax.distributed.initialize`."""
    if os.environ.get(DISTRIBUTED_ENV, "") not in ("", "0"):
        return True
    if config is not None and "distributed" in config:
        return bool(config.distributed.enabled or config.distributed.coordinator_address)
    return False


def maybe_initialize_distributed(config=None) -> bool:
    """Calls ``jax.distributed.initialize`` (once) if requested; returns whether it is initialized.

    Explicit ``distributed.coordinator_address`` / ``num_processes`` / ``process_id`` are passed on;
    otherwise JAX detects the cluster (Cloud TPU VMs, SLURM, Open MPI, ...). Must run before any device
    is used.
    """
    if not distributed_requested(config):
        return False
    if jax.distributed.is_initialized():
        return True
    kwargs: dict[str, Any] = {}
    if config is not None and "distributed" in config:
        d = config.distributed
        if d.coordinator_address:
            kwargs["coordinator_address"] = d.coordinator_address
        if d.num_processes > 0:
            kwargs["num_processes"] = d.num_processes
        if d.process_id >= 0:
            kwargs["process_id"] = d.process_id
    jax.distributed.initialize(**kwargs)
    return True


def init_sharded(init_fn, mesh: Mesh, model, tx) -> Any:
    """Runs ``init_fn() -> TrainState`` under jit with the state's shardings as outputs (no host copy)."""
    abstract = jax.eval_shape(init_fn)
    return jax.jit(init_fn, out_shardings=state_shardings(abstract, model, tx, mesh))()


def jit_train_fns(cls, mesh: Mesh, abstract_state: Any, model, tx, **fns) -> Any:
    """``cls(mesh=mesh, **{name: jit(fn)})``: each ``fn(state, *rest) -> (state, metrics)`` compiled with the
    state's shardings in and out (state donated), metrics replicated, other inputs as they come; a None
    function stays None."""
    state_sh = state_shardings(abstract_state, model, tx, mesh)
    rep = replicated(mesh)
    jitted = {}
    for name, fn in fns.items():
        if fn is None:
            jitted[name] = None
            continue
        extra = len(inspect.signature(fn).parameters) - 1
        jitted[name] = jax.jit(
            fn,
            in_shardings=(state_sh,) + (None,) * extra,
            out_shardings=(state_sh, rep),
            donate_argnums=0,
        )
    return cls(mesh=mesh, **jitted)


# -- per-example work over the mesh ---------------------------------------------------------------------
def example_axes(mesh: Mesh, batch_size: int) -> tuple[str, ...]:
    """Mesh axes a batch of `batch_size` independent examples is split over: all devices when they divide it,
    else ``data`` alone when it divides, else none (replicated)."""
    if batch_size % (mesh.shape["data"] * mesh.shape["fsdp"]) == 0:
        return ("data", "fsdp")
    if batch_size % mesh.shape["data"] == 0:
        return ("data",)
    return ()


def map_examples(fn, mesh: Mesh | None, shared: Any, *batch: Any) -> Any:
    """``vmap(fn, in_axes=(None, 0, ...))(shared, *batch)``, each device running its own examples.

    Inside jit: `batch` leaves have a leading axis of examples; `shared` (e.g. params) is replicated
    for the call. With a mesh the vmapped function runs under ``jax.shard_map`` over the axes of
    :func:`example_axes` (``check_vma=False``: mctx's search loop carries values whose manual-axis types
    jax cannot infer). Used for MCTS self-play, whose while-loops XLA's automatic partitioner handles
    poorly. Results do not depend on the mesh as long as `fn` is per-example (its randomness from a
    per-example key).
    """
    mapped = jax.vmap(fn, in_axes=(None,) + (0,) * len(batch))
    if mesh is None:
        return mapped(shared, *batch)
    n = jax.tree.leaves(batch)[0].shape[0]
    axes = example_axes(mesh, n)
    spec = P(axes) if axes else P()
    return jax.shard_map(
        mapped,
        mesh=mesh,
        in_specs=(P(),) + (spec,) * len(batch),
        out_specs=spec,
        check_vma=False,
    )(shared, *batch)


def gathered(tree: Any, mesh: Mesh | None) -> Any:
    """Results replicated on every device of `mesh` (every process can read them; they are small)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, replicated(mesh))
