"""The train-step benchmark measures the reference model and counts FLOPs as the reference does."""

import functools

import jax
import numpy as np

from benchmarks import reference
from dfe_jax import models
from dfe_jax import train_step


def test_reference_config_has_the_torch_models_parameters_and_flops():
  config = reference.config()
  model = models.get_model(config.model)
  optimizer = train_step.make_optimizer(config)
  state = jax.eval_shape(functools.partial(
      train_step.create_state, model, optimizer, window_frames=config.window_frames,
      num_features=config.model.feature_dim), jax.random.PRNGKey(0))
  num_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
  assert num_params == reference.PARAMS
  forward, train = reference.analytic_flops_per_frame(config.model)
  assert train == 3 * forward == reference.TRAIN_FLOPS_PER_FRAME
