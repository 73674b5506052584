"""Data parallelism over every device of every process with a `jax.sharding.Mesh`.

The batch is sharded along the mesh's `data` axis and the train state is replicated; jit then
computes BatchNorm statistics and gradients over the global batch, so a run gives the same
numbers on one device, eight GPUs or several hosts (up to float rounding).
"""

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

DATA_AXIS = "data"


def create_mesh() -> Mesh:
  """All devices of all processes on one `data` axis, process 0's devices first.

  Ordered by process so that process p's share of a global batch is its p-th contiguous block,
  as the input pipeline reads it: the global batch is then the same array on 1 or N processes.
  """
  devices = sorted(jax.devices(), key=lambda d: (d.process_index, d.id))
  return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(DATA_AXIS))


def check_batch_size(batch_size: int, mesh: Mesh, field: str) -> None:
  if batch_size % mesh.size:
    raise ValueError(f"{field}={batch_size} must be divisible by the number of devices "
                     f"({mesh.size}); pick a multiple with --set {field}=...")


def to_global(batch: dict, mesh: Mesh) -> dict:
  """This process's share of a batch -> global arrays sharded over the `data` axis.

  With P processes each passes B / P rows; process p's rows become rows [p B/P, (p+1) B/P) of
  the global batch (its devices are the p-th block of the mesh).
  """
  sharding = data_sharded(mesh)
  return {key: jax.make_array_from_process_local_data(sharding, np.asarray(value))
          for key, value in batch.items()}


def to_host(tree):
  """Global (possibly multi-host) arrays -> numpy on every process."""
  if jax.process_count() == 1:
    return jax.tree.map(np.asarray, tree)
  from jax.experimental import multihost_utils
  return multihost_utils.process_allgather(tree, tiled=True)
