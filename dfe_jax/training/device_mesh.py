"""The device mesh of data-parallel training: one ("data",) axis over every device."""

import jax

P = jax.sharding.PartitionSpec


def make_mesh(num_devices=None):
  """A 1-D ("data",) mesh over all (or the first `num_devices`) devices.

  The axis is `Auto`: XLA inserts the collectives (a sum over the batch inside jit is already
  global). JAX's default for `make_mesh` is now `Explicit` sharding-in-types, which would make
  every reduction over the batch axis a type error in the quantizer's code.
  """
  devices = jax.devices()[:num_devices] if num_devices else jax.devices()
  return jax.make_mesh((len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,),
                       devices=devices)


def data_sharding(mesh):
  """Batches are split over the mesh's `data` axis along their first dimension."""
  return jax.sharding.NamedSharding(mesh, P("data"))


def replicated(mesh):
  """Parameters and optimizer state live whole on every device."""
  return jax.sharding.NamedSharding(mesh, P())
