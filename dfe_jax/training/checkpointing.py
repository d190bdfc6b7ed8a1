"""Orbax checkpoints of a run: the latest few by step, and the best by a validation metric.

A checkpoint holds the whole `TrainState` (params, optimizer state, codebook statistics, step,
RNG) and a JSON `meta` item (the data position and provenance). The data position is the
number of global batches consumed, which equals the step: the input pipeline restarts its
stream there exactly (see `input_pipeline`).

Checkpoints written before the model was described as layers (`models/architecture.py`) hold
the parameters in an older layout; `restore_state` reads both (`legacy_layouts`).
"""

import os

from absl import logging
import jax
import orbax.checkpoint as ocp

from dfe_jax.formats import outputs
from dfe_jax.training import legacy_layouts


def _handlers():
  return {"state": ocp.StandardCheckpointHandler(), "meta": ocp.JsonCheckpointHandler()}


def _manager(directory, max_to_keep, best_metric=None, best_mode="max"):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
      best_fn=(lambda m: m[best_metric]) if best_metric else None, best_mode=best_mode)
  return ocp.CheckpointManager(directory, options=options, item_handlers=_handlers())


def read_only_manager(directory):
  """A manager that reads the checkpoints in `directory` and writes nothing."""
  return ocp.CheckpointManager(directory, item_handlers=_handlers(),
                               options=ocp.CheckpointManagerOptions(read_only=True))


def _abstract(state):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


class CheckpointMismatchError(ValueError):
  """A checkpoint does not fit the model its config describes; names the checkpoint."""


def _check_params_fit(where, stored, wanted, path="params"):
  """Stops, naming the first parameter, where the checkpoint's parameter tree `stored` (Orbax
  metadata) and the model's `wanted` (ShapeDtypeStructs) differ: before Orbax reads a byte."""
  for key in sorted(set(stored) | set(wanted)):
    name = f"{path}/{key}"
    if key not in wanted or key not in stored:
      side = "the checkpoint" if key in stored else "the config's model"
      raise CheckpointMismatchError(f"{where}: only {side} has {name}; is this the config the "
                                    "checkpoint was trained with?")
    if isinstance(wanted[key], dict):
      _check_params_fit(where, stored[key], wanted[key], name)
    elif tuple(stored[key].shape) != tuple(wanted[key].shape):
      raise CheckpointMismatchError(f"{where}: {name} is {tuple(stored[key].shape)} in the "
                                    f"checkpoint but {tuple(wanted[key].shape)} in the config's "
                                    "model")


def restore_state(manager, step, abstract_state, model):
  """The `TrainState` of `manager`'s checkpoint `step` of `model`, restored into
  `abstract_state`'s structure and shardings; an older layout is converted to today's."""
  stored_params = manager.item_metadata(step)["state"].tree["params"]
  parts = legacy_layouts.old_parts(model, stored_params)
  target = legacy_layouts.to_old(abstract_state, parts) if parts else abstract_state
  _check_params_fit(f"{manager.directory}/{step}", stored_params, target.params)
  try:
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target)))["state"]
  except (ValueError, KeyError, TypeError) as e:  # Orbax's message spans lines: keep the first.
    first_line = (str(e).strip().splitlines() or [type(e).__name__])[0]
    raise CheckpointMismatchError(f"{manager.directory}/{step}: does not fit the model of its "
                                  f"config ({first_line})") from None
  return legacy_layouts.to_new(restored, parts) if parts else restored


class Checkpoints:
  """`workdir/checkpoints` keeps the latest `keep` steps; `workdir/best` the best one."""

  def __init__(self, workdir, model, keep, best_metric, best_mode):
    workdir = outputs.absolute(workdir)
    self.model = model
    self.best_metric = best_metric
    self.latest = _manager(os.path.join(workdir, "checkpoints"), keep)
    self.best = _manager(os.path.join(workdir, "best"), 1, best_metric, best_mode)

  def save(self, state, meta):
    """Saves `state` at its step (asynchronously) unless that step is already saved."""
    step = int(jax.device_get(state.step))
    if step in self.latest.all_steps():
      return
    self.latest.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)), force=True)

  def save_if_best(self, state, meta, metrics):
    """Offers `state` to the best-checkpoint manager, which keeps it if `metrics` win."""
    if self.best_metric not in metrics:
      return
    step = int(jax.device_get(state.step))
    if step in self.best.all_steps():
      return
    self.best.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
                   metrics={self.best_metric: float(metrics[self.best_metric])}, force=True)

  def restore(self, fresh_state, init_from=""):
    """The state to start from, and where it came from.

    Resume order:
      1. the latest checkpoint in this workdir (an interrupted run continues exactly);
      2. `init_from`: the model variables (params and codebook statistics) of another
         workdir's latest checkpoint, with a fresh optimizer, step and RNG;
      3. `fresh_state`, from scratch.
    """
    step = self.latest.latest_step()
    if step is not None:
      state = restore_state(self.latest, step, _abstract(fresh_state), self.model)
      return state, f"resumed from step {step}"
    if init_from:
      source = read_only_manager(os.path.join(outputs.absolute(init_from), "checkpoints"))
      init_step = source.latest_step()
      if init_step is None:
        raise FileNotFoundError(f"config.init_from={init_from}: no checkpoint in "
                                f"{init_from}/checkpoints")
      restored = restore_state(source, init_step, _abstract(fresh_state), self.model)
      logging.info("initialised params and codebooks from %s step %d", init_from, init_step)
      return fresh_state.replace(params=restored.params, vq_stats=restored.vq_stats), (
          f"initialised from {init_from} step {init_step}")
    return fresh_state, "from scratch"

  def wait(self):
    """Blocks until asynchronous saves are on disk."""
    self.latest.wait_until_finished()
    self.best.wait_until_finished()

  def close(self):
    self.latest.close()
    self.best.close()
