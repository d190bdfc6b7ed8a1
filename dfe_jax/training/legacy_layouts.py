"""Checkpoints written before the layer lists (`models/architecture.py`): their parameter layout.

Two things changed with model.npz format 2. The temporal conv's convs had Flax's automatic names
(`Conv_0`, `ResStack_0/Conv_1`; `architecture.legacy_names` maps today's names to them), and the
additive decoder's `readout` was a Dense with kernel [D, F] where the 1x1 conv has [1, D, F].
`old_parts` reads which parts of a stored checkpoint are old; `to_old` and `to_new` convert a
whole train state between the layouts (the params and each of the optimizer's moment trees,
which have the params' structure), so an old checkpoint restores, resumes and initialises.
"""

import dataclasses

import jax

from dfe_jax.models import additive_decoder
from dfe_jax.models import architecture
from dfe_jax.models import temporal_conv


@dataclasses.dataclass(frozen=True)
class _RenamedConvs:
  """A temporal conv part whose convs had Flax's automatic names."""
  names: dict  # {today's layer name: its name before format 2 ("ResStack_0/Conv_1")}

  def to_old(self, modules):
    old = {}
    for name, leaves in modules.items():
      *scopes, last = self.names[name].split("/")
      node = old
      for scope in scopes:
        node = node.setdefault(scope, {})
      node[last] = leaves
    return old

  def to_new(self, old):
    modules = {}
    for name, old_name in self.names.items():
      node = old
      for scope in old_name.split("/"):
        node = node[scope]
      modules[name] = node
    return modules


class _DenseReadout:
  """The additive decoder, whose `readout` kernel was [D, F] (a Dense), not [1, D, F]."""

  def to_old(self, modules):
    kernel = modules["readout"]["kernel"]
    old_kernel = jax.ShapeDtypeStruct(kernel.shape[1:], kernel.dtype, sharding=kernel.sharding)
    return {**modules, "readout": {**modules["readout"], "kernel": old_kernel}}

  def to_new(self, old):
    return {**old, "readout": {**old["readout"], "kernel": old["readout"]["kernel"][None]}}


def old_parts(model, stored_params):
  """{"encoder" | "decoder": its conversion} for the parts of `model` that `stored_params` (the
  checkpoint's parameter metadata tree) holds in the layout before format 2."""
  parts = {}
  for part in ("encoder", "decoder"):
    module, stored = getattr(model, part), stored_params.get(part, {})
    if isinstance(module, (temporal_conv.Encoder, temporal_conv.Decoder)) and "Conv_0" in stored:
      parts[part] = _RenamedConvs(architecture.legacy_names(module.layers()))
    elif (isinstance(module, additive_decoder.Decoder)
          and len(stored["readout"]["kernel"].shape) == 2):
      parts[part] = _DenseReadout()
  return parts


def _map_parts(tree, convert):
  """`tree` with every dict entry "encoder"/"decoder" replaced by `convert(part, value)`;
  walks dicts, tuples (named or not), lists and dataclasses."""
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


def to_old(abstract_state, parts):
  """An abstract train state (ShapeDtypeStructs) in the old layout of `parts`."""
  return _map_parts(abstract_state, lambda part, v: parts[part].to_old(v) if part in parts else v)


def to_new(state, parts):
  """A train state restored in the old layout of `parts`, in today's."""
  return _map_parts(state, lambda part, v: parts[part].to_new(v) if part in parts else v)
