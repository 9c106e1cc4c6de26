"""Devices: the ONLY module that talks about them. A ('data',) mesh, shardings, multi-host start.

Data parallelism is plain `jax.jit` with shardings: the state and the (small) training tables
are replicated, each step's batch is split over the 'data' axis, and XLA inserts the gradient
and BatchNorm-statistics reductions. No pmap, no hand-written collectives.
"""

from __future__ import annotations

from typing import Any

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def initialize_distributed(enabled: bool) -> None:
    """Starts multi-host JAX (`jax.distributed.initialize()`, configured by the environment of
    the cluster: TPU pods, SLURM, or JAX_COORDINATOR_ADDRESS etc.) when `enabled`."""
    if enabled:
        jax.distributed.initialize()


def make_mesh(num_devices: int | None = None) -> Mesh:
    """A 1-D ('data',) mesh over the first `num_devices` devices (default: all of them)."""
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


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises when the per-member batch does not split evenly over the mesh."""
    n = mesh.devices.size
    if batch_size % n:
        raise ValueError(f"batch_size {batch_size} does not divide over {n} devices; use a "
                         f"multiple of {n}.")


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree (TrainState, MemberData) on every device of the mesh."""
    return jax.device_put(tree, replicated(mesh))
