"""Host batches -> global jax.Arrays sharded over the mesh's `data` axis."""

import jax
import numpy as np

from dfe_jax.training import device_mesh


def to_global(batch, mesh):
  """Turns this process's numpy batch into global jax.Arrays sharded over `data`."""
  sharding = device_mesh.data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def global_batches(ds, mesh):
  """Iterates a per-process tf.data dataset as global, sharded batches."""
  for batch in ds.as_numpy_iterator():
    yield to_global(batch, mesh)


def check_batch_size(global_batch_size, mesh):
  """The local batch size, or a clear error when the global batch does not split evenly."""
  devices, processes = mesh.devices.size, jax.process_count()
  if global_batch_size % devices:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{devices} devices of the mesh")
  return global_batch_size // processes
