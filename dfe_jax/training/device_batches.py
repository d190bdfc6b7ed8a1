"""Host batches -> global jax.Arrays sharded over the mesh's `data` axis, prefetched.

The step should never wait for its batch: a background thread turns the next host batches into
device arrays (`make_array_from_process_local_data` starts the transfer) while the current step
runs, keeping up to `prefetch` of them in flight. One producer keeps the order, so the stream,
and therefore training, is the same with or without prefetching.
"""

import queue
import threading

import jax
import numpy as np

from dfe_jax.training import device_mesh


def to_global(batch, mesh):
  """Turns this process's numpy batch into global jax.Arrays sharded over `data`."""
  sharding = device_mesh.data_sharding(mesh)
  return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
          for k, v in batch.items()}


def global_batches(ds, mesh, prefetch=2):
  """Iterates a per-process tf.data dataset as global, sharded batches, `prefetch` ahead."""
  batches = (to_global(batch, mesh) for batch in ds.as_numpy_iterator())
  return prefetched(batches, prefetch) if prefetch > 0 else batches


_DONE = object()


def prefetched(iterator, size):
  """`iterator`'s items in order, produced by a background thread up to `size` ahead.

  An exception in the producer is raised here, at the item where it happened; closing the
  generator (or dropping it) stops the producer.
  """
  items = queue.Queue(maxsize=size)
  stop = threading.Event()

  def produce():
    try:
      for item in iterator:
        while not stop.is_set():
          try:
            items.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
        if stop.is_set():
          return
      items.put(_DONE)
    except BaseException as e:  # pylint: disable=broad-except  Re-raised in the consumer.
      items.put(e)

  thread = threading.Thread(target=produce, name="device-prefetch", daemon=True)
  thread.start()
  try:
    while True:
      item = items.get()
      if item is _DONE:
        return
      if isinstance(item, BaseException):
        raise item
      yield item
  finally:
    stop.set()


def check_batch_size(global_batch_size, mesh):
  """The local batch size, or a clear error when the global batch does not split evenly."""
  devices, processes = mesh.devices.size, jax.process_count()
  if global_batch_size % devices:
    raise ValueError(f"global batch size {global_batch_size} is not divisible by the "
                     f"{devices} devices of the mesh")
  return global_batch_size // processes
