"""The trainer's jitted step on fixed random batches already on the device, as benchmarks time it.

The real `train_step.train_step`, jitted as `train_lib` jits it (replicated state, donated; the
batch split over the `("data",)` mesh), after the k-means codebook initialisation, cycling over
four N(0, 1) batches (seed 0) so the input pipeline is left out.
"""

import dataclasses
import functools
from typing import Any, Callable

import jax
import numpy as np

from dfe_jax import models
from dfe_jax.formats import feature_spaces
from dfe_jax.training import device_mesh
from dfe_jax.training import train_step


@dataclasses.dataclass
class JittedStep:
  """A compiled-on-first-call train step and its own state; `run(n)` advances it n steps."""
  fn: Callable
  state: Any
  batches: list
  num_params: int
  metrics: Any = None
  count: int = 0

  def run(self, steps):
    """Dispatches `steps` steps; returns their last metrics (not waited for)."""
    for _ in range(steps):
      self.state, self.metrics = self.fn(self.state, self.batches[self.count % len(self.batches)])
      self.count += 1
    return self.metrics


def build(config, num_batches=4):
  """The step of `config` (its model, optimizer and loss) on FLAME-53 random batches."""
  batch_size, frames = config.global_batch_size, config.window_frames
  feature_names = tuple(feature_spaces.FLAME53)
  mesh = device_mesh.make_mesh()
  replicated, data_sharding = device_mesh.replicated(mesh), device_mesh.data_sharding(mesh)
  model = models.get_model(config.model)
  optimizer = train_step.make_optimizer(config)
  state = jax.jit(functools.partial(train_step.create_state, model, optimizer,
                                    window_frames=frames, num_features=len(feature_names)),
                  out_shardings=replicated)(jax.random.PRNGKey(config.seed))
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  rng = np.random.default_rng(0)
  batches = [{"x": jax.device_put(rng.standard_normal((batch_size, frames, len(feature_names)),
                                                      np.float32), data_sharding),
              "mask": jax.device_put(np.ones((batch_size, frames), bool), data_sharding)}
             for _ in range(num_batches)]
  state = jax.jit(functools.partial(train_step.init_codebooks, model),
                  out_shardings=replicated)(state, batches[0])
  fn = jax.jit(
      functools.partial(train_step.train_step, model, optimizer, config.loss, feature_names),
      in_shardings=(replicated, data_sharding), out_shardings=(replicated, replicated),
      donate_argnums=0)
  return JittedStep(fn, state, batches, num_params)
