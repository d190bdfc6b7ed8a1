"""Orbax checkpoints of a run: the latest few by step, and the best by a validation metric.

A checkpoint holds the whole `TrainState` (params, optimizer state, codebook statistics, step,
RNG) and a JSON `meta` item (the data position and provenance). The data position is the
number of global batches consumed, which equals the step: the input pipeline restarts its
stream there exactly (see `input_pipeline`).

Checkpoints written before the model was described as layers (`models/architecture.py`) name
the temporal conv's weights as Flax did automatically (`Conv_0`, `ResStack_0/Conv_1`);
`restore_state` reads both, renaming the old ones with `architecture.legacy_names`.
"""

import dataclasses
import os

from absl import logging
import jax
import orbax.checkpoint as ocp

from dfe_jax.formats import outputs
from dfe_jax.models import architecture
from dfe_jax.models import temporal_conv


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


def _legacy_names(model):
  """{"encoder": {name: old name}, "decoder": ...} for the temporal conv's modules, which had
  Flax's automatic names before the layer lists."""
  return {part: architecture.legacy_names(module.layers())
          for part, module in (("encoder", model.encoder), ("decoder", model.decoder))
          if isinstance(module, (temporal_conv.Encoder, temporal_conv.Decoder))}


def _map_parts(tree, convert):
  """`tree` with every dict entry "encoder"/"decoder" replaced by `convert(part, value)`.

  Walks dicts, tuples (named or not), lists and dataclasses: the params and each of the
  optimizer's moment trees have that shape.
  """
  if isinstance(tree, dict):
    return {k: convert(k, v) if k in ("encoder", "decoder") and isinstance(v, dict)
            else _map_parts(v, convert) for k, v in tree.items()}
  if isinstance(tree, tuple) and hasattr(tree, "_fields"):
    return type(tree)(*(_map_parts(v, convert) for v in tree))
  if isinstance(tree, (tuple, list)):
    return type(tree)(_map_parts(v, convert) for v in tree)
  if dataclasses.is_dataclass(tree) and not isinstance(tree, type):
    return tree.replace(**{f.name: _map_parts(getattr(tree, f.name), convert)
                           for f in dataclasses.fields(tree)})
  return tree


def _to_legacy(tree, names):
  def convert(part, modules):
    if part not in names:
      return modules
    old = {}
    for name, leaves in modules.items():
      *scopes, last = names[part][name].split("/")
      node = old
      for scope in scopes:
        node = node.setdefault(scope, {})
      node[last] = leaves
    return old
  return _map_parts(tree, convert)


def _from_legacy(tree, names):
  def convert(part, old):
    if part not in names:
      return old
    modules = {}
    for name, old_name in names[part].items():
      node = old
      for scope in old_name.split("/"):
        node = node[scope]
      modules[name] = node
    return modules
  return _map_parts(tree, convert)


def _has_legacy_names(manager, step):
  params = manager.item_metadata(step)["state"].tree["params"]
  return "Conv_0" in params.get("encoder", {})


def restore_state(manager, step, abstract_state, model):
  """The `TrainState` of `manager`'s checkpoint `step` of `model`, restored into
  `abstract_state`'s structure and shardings; old layer names are renamed to today's."""
  names = _legacy_names(model) if _has_legacy_names(manager, step) else {}
  target = _to_legacy(abstract_state, names) if names else abstract_state
  restored = manager.restore(step, args=ocp.args.Composite(
      state=ocp.args.StandardRestore(target)))["state"]
  return _from_legacy(restored, names) if names else restored


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
