"""Orbax checkpoints of a run: the latest few by step, and the best by a validation metric.

A checkpoint holds the whole `TrainState` (params, optimizer state, codebook statistics, step,
RNG) and a JSON `meta` item (the data position and provenance). The data position is the
number of global batches consumed, which equals the step: the input pipeline restarts its
stream there exactly (see `input_pipeline`).
"""

import os

from absl import logging
import jax
import orbax.checkpoint as ocp

from dfe_jax.formats import outputs

_ITEMS = ("state", "meta")


def _manager(directory, max_to_keep, best_metric=None, best_mode="max"):
  options = ocp.CheckpointManagerOptions(
      max_to_keep=max_to_keep, create=True, enable_async_checkpointing=True,
      best_fn=(lambda m: m[best_metric]) if best_metric else None, best_mode=best_mode)
  return ocp.CheckpointManager(directory, options=options, item_names=_ITEMS)


def _abstract(state):
  return jax.tree.map(ocp.utils.to_shape_dtype_struct, state)


class Checkpoints:
  """`workdir/checkpoints` keeps the latest `keep` steps; `workdir/best` the best one."""

  def __init__(self, workdir, keep, best_metric, best_mode):
    workdir = outputs.absolute(workdir)
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
      restored = self.latest.restore(step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract(fresh_state)), meta=ocp.args.JsonRestore()))
      return restored["state"], f"resumed from step {step}"
    if init_from:
      source = ocp.CheckpointManager(os.path.join(outputs.absolute(init_from), "checkpoints"),
                                     item_names=_ITEMS,
                                     options=ocp.CheckpointManagerOptions(read_only=True))
      init_step = source.latest_step()
      if init_step is None:
        raise FileNotFoundError(f"config.init_from={init_from}: no checkpoint in "
                                f"{init_from}/checkpoints")
      restored = source.restore(init_step, args=ocp.args.Composite(
          state=ocp.args.StandardRestore(_abstract(fresh_state))))["state"]
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
