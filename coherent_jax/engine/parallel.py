"""Devices: the ONLY module that talks about them. A ('data',) mesh, shardings, multi-host start.

Data parallelism is plain `jax.jit` with shardings: the state and the (small) training tables
are replicated, each step's batch is split over the 'data' axis, and XLA inserts the gradient
and BatchNorm-statistics reductions. No pmap, no hand-written collectives. Sampling splits its
rows (patients x candidates x draws) over the same axis; its row count is padded to a multiple
of the device count inside the jitted call and the padding is dropped from the outputs.

Multi-host: every process runs the same program on a mesh over ALL devices (`make_mesh` after
`initialize_distributed`). Arrays that span processes are built from each process's own rows
(`from_process_rows`, with `process_rows` saying which rows those are) or replicated from one
value every process holds (`replicate`); results come back to every host with `to_host`, and
files are written by the primary process alone (`is_primary`). Orbax checkpoints are saved by
every process together (Orbax writes each array once).
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(enabled: bool = True, *, coordinator_address: str | None = None,
                           num_processes: int | None = None, process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None) -> None:
    """Starts multi-host JAX when `enabled`; call it before anything else touches JAX.

    With no arguments `jax.distributed.initialize` reads the cluster: Cloud TPU pod slices,
    SLURM (`srun`), Open MPI, or `JAX_COORDINATOR_ADDRESS` plus explicit `num_processes` and
    `process_id` (one process per host or per GPU). CPU processes talk through gloo
    collectives. A second call in the same process does nothing.

    Args:
        enabled: False does nothing (single-process runs).
        coordinator_address: 'host:port' of process 0 (None: from the cluster environment).
        num_processes, process_id: this run's process count and this process's index.
        local_device_ids: the local devices this process uses (None: all of them).
    """
    if not enabled or jax.distributed.is_initialized():
        return
    jax.config.update("jax_cpu_collectives_implementation", "gloo")  # CPU only; GPUs use NCCL
    jax.distributed.initialize(coordinator_address=coordinator_address,
                               num_processes=num_processes, process_id=process_id,
                               local_device_ids=local_device_ids)


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D ('data',) mesh over the first `num_devices` devices of all processes (default:
    all of them)."""
    devices = jax.devices()
    if num_devices is None:
        num_devices = len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"asked for {num_devices} devices but {len(devices)} are present "
                         f"({devices[0].platform}); lower num_devices, or on CPU set "
                         "XLA_FLAGS=--xla_force_host_platform_device_count=N before JAX starts.")
    return Mesh(devices[:num_devices], (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (state, training tables)."""
    return NamedSharding(mesh, PartitionSpec())


def member_batch_sharding(mesh: Mesh) -> NamedSharding:
    """Batches of an ensemble, leaves [K, B, ...]: split B over the 'data' axis."""
    return NamedSharding(mesh, PartitionSpec(None, DATA_AXIS))


def row_sharding(mesh: Mesh, axis: int = 0) -> NamedSharding:
    """Axis `axis` (the rows) split over the 'data' axis, the other axes whole."""
    return NamedSharding(mesh, PartitionSpec(*([None] * axis), DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises when the per-member batch does not split evenly over the mesh."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"batch_size {batch_size} does not divide over {n} devices; use a "
                         f"multiple of {n}.")


def padded_rows(num_rows: int, mesh: Mesh | None) -> int:
    """The smallest multiple of the mesh's device count >= num_rows (num_rows without a mesh)."""
    if mesh is None:
        return num_rows
    n = mesh.devices.size
    return -(-num_rows // n) * n


def pad_rows(a: jax.Array, size: int, axis: int = 0) -> jax.Array:
    """Pads axis `axis` of `a` to `size` by repeating its last row (valid inputs, never read
    back). Traced code."""
    extra = size - a.shape[axis]
    if extra == 0:
        return a
    widths = [(0, extra if i == axis else 0) for i in range(a.ndim)]
    return jnp.pad(a, widths, mode="edge")


def constrain_rows(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Inside jit: every leaf's axis `axis` split over the 'data' axis (no-op without a mesh)."""
    if mesh is None:
        return tree
    return jax.lax.with_sharding_constraint(tree, row_sharding(mesh, axis))


def constrain_even_rows(tree: Any, mesh: Mesh | None, axis: int = 0) -> Any:
    """Inside jit: `constrain_rows` for leaves whose rows split evenly over the devices; the
    others are left where XLA puts them (outputs of unpadded row counts)."""
    if mesh is None:
        return tree
    n = mesh.devices.size
    return jax.tree.map(lambda a: constrain_rows(a, mesh, axis) if a.shape[axis] % n == 0 else a,
                        tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (TrainState, MemberData) on every device of the mesh. Multi-host: every
    process passes the same values."""
    return jax.device_put(tree, replicated(mesh))


def on_mesh(tree: Any, mesh: Mesh | None) -> Any:
    """Inputs of a jitted call over `mesh`: leaves already placed on exactly its devices keep
    their sharding (e.g. rows from `from_process_rows`), every other leaf (host arrays,
    scalars, keys, single-device arrays) is replicated. No-op without a mesh."""
    if mesh is None:
        return tree
    devices = set(mesh.devices.flat)

    def one(a):
        if isinstance(a, jax.Array) and a.sharding.device_set == devices:
            return a
        if isinstance(a, jax.Array) and jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(one(jax.random.key_data(a)),
                                            impl=jax.random.key_impl(a))
        return jax.device_put(np.asarray(a), replicated(mesh))  # via host: any source device

    return jax.tree.map(one, tree)


def process_rows(num_rows: int, mesh: Mesh, axis: int = 0) -> slice:
    """The rows of a global [.., num_rows, ..] array (split on `axis`) that THIS process feeds
    to `from_process_rows`; num_rows must be a multiple of the device count (`padded_rows`)."""
    shape = (1,) * axis + (num_rows,)
    index = row_sharding(mesh, axis).addressable_devices_indices_map(shape)
    starts = [ix[axis].start or 0 for ix in index.values()]
    stops = [num_rows if ix[axis].stop is None else ix[axis].stop for ix in index.values()]
    start, stop = min(starts), max(stops)
    if stop - start != sum(b - a for a, b in zip(starts, stops)):
        raise ValueError("this process's devices hold rows that are not contiguous; build the "
                         "mesh with make_mesh (devices in process order).")
    return slice(start, stop)


def from_process_rows(local: Any, mesh: Mesh, num_rows: int, axis: int = 0) -> Any:
    """A global array split over the 'data' axis from this process's rows only.

    Args:
        local: a pytree of host arrays holding rows `process_rows(num_rows, mesh, axis)` of
            each global array on axis `axis`.
        mesh: the mesh over all processes' devices.
        num_rows: the global row count, a multiple of the device count.
        axis: the row axis (1 for member-stacked leaves [K, N, ...]).
    """
    sharding = row_sharding(mesh, axis)

    def one(a):
        a = np.asarray(a)
        shape = a.shape[:axis] + (num_rows,) + a.shape[axis + 1:]
        return jax.make_array_from_process_local_data(sharding, a, shape)

    return jax.tree.map(one, local)


def to_host(tree: Any) -> Any:
    """Every leaf as a numpy array holding its GLOBAL value, on every process (an all-gather
    across processes when a leaf spans several)."""

    def one(a):
        if isinstance(a, jax.Array) and not a.is_fully_addressable:
            return multihost_utils.process_allgather(a, tiled=True)
        return np.asarray(a)

    return jax.tree.map(one, tree)


def is_primary() -> bool:
    """Whether this process writes files (process 0); True in single-process runs."""
    return jax.process_index() == 0
