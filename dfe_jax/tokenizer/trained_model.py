"""Loads a trained model from a workdir: its config, dataset statistics and variables."""

import dataclasses
import functools
import json
import os

import jax
import ml_collections

from dfe_jax import models
from dfe_jax.formats import dataset_info
from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs
from dfe_jax.training import checkpointing
from dfe_jax.training import train_step


@dataclasses.dataclass
class TrainedModel:
  """A model ready to apply: `model.apply(variables, ...)`."""
  config: ml_collections.ConfigDict
  info: dict            # The dataset.json the model was trained on.
  model: models.Model
  variables: dict       # {"params": ..., "vq_stats": ...}
  step: int


def _read_json(path):
  if not filesystem.exists(path):
    raise FileNotFoundError(f"{path}: not found; is this a training workdir?")
  with filesystem.open(path) as f:
    return json.load(f)


def load(workdir, step=None, best=False):
  """Restores the latest (or `step`, or the best) checkpoint of `workdir`."""
  config = ml_collections.ConfigDict(_read_json(os.path.join(workdir, "config.json"))["config"])
  info = dataset_info.read(os.path.join(workdir, "dataset.json"))
  directory = os.path.join(outputs.absolute(workdir), "best" if best else "checkpoints")
  # Checked before Orbax opens the folder: its own error dumps every manager option.
  if not filesystem.isdir(directory) or not any(
      name.isdigit() for name in filesystem.listdir(directory)):
    raise FileNotFoundError(f"{directory}: no checkpoint; train first (python -m dfe_jax.train)")
  manager = checkpointing.read_only_manager(directory)
  try:  # Closed on every path: an open manager's threads would outlive an error.
    return _restore(manager, directory, config, info, step)
  finally:
    manager.close()


def _restore(manager, directory, config, info, step):
  step = manager.latest_step() if step is None else step
  if step is None or step not in manager.all_steps():
    raise FileNotFoundError(f"{directory}: no checkpoint" + (f" at step {step}" if step else ""))
  model = models.get_model(config.model, dtype="float32")  # Tokenize and export: float32.
  abstract = jax.eval_shape(functools.partial(
      train_step.create_state, model, train_step.make_optimizer(config),
      window_frames=config.window_frames, num_features=info["num_features"]),
                            jax.random.PRNGKey(0))
  # Restore whole on this process's devices, whatever topology wrote the checkpoint.
  on_here = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=on_here),
                          abstract)
  state = checkpointing.restore_state(manager, step, abstract, model)
  return TrainedModel(config, info, model, {"params": state.params, "vq_stats": state.vq_stats},
                      step)
