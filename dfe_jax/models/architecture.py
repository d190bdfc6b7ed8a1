"""The temporal conv encoder and decoder, described once as lists of layers.

A layer list is plain data: `ConvLayer` (its parameters live under its `name`), `Relu` and
`Residual` (x + body(x)). Every implementation runs the same list with `run`: the Flax model
(`temporal_conv`, and its XLA:CPU variant), the chunked tokenizer encoder, and the NumPy
tokenizer, which reads the list from `model.npz` (`to_json`). So a layer added or renamed here
is added or renamed everywhere, and a list whose weights are missing fails naming the layer.

Encoder (frames [T, F] -> latents [T / f, D], f = 2**downsample_log2):
  stem conv, ReLU; per stage: strided conv `stage<s>_down` (`down_kernel`, stride 2), residual
  blocks `stage<s>_res<i>` = x + mix(ReLU(dilated(ReLU(x)))), one per dilation; conv `out` to D.
Decoder mirrors it: stem conv, ReLU; per stage: residual blocks, then `stage<s>_up` (nearest x2
  upsampling, then conv); conv `hidden`, ReLU; conv `out` to the feature count.
Additive decoder (`models/additive_decoder.py`): one 1x1 conv `readout` of the latent, repeated
  over the step's frames.

Parameter names before format 2 were Flax's automatic ones (`Conv_0`, `ResStack_0/Conv_1`);
`legacy_names` maps today's names to them, so old checkpoints still restore.
"""

import dataclasses

from dfe_jax.models import conv1d


@dataclasses.dataclass(frozen=True)
class ConvLayer:
  """A 1-D conv, 'same' padded, with parameters `<name>/kernel` [k, in, out] and `<name>/bias`.

  `upsample` > 1 repeats each input frame that many times first (nearest-neighbour).
  """
  name: str
  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  upsample: int = 1


@dataclasses.dataclass(frozen=True)
class Relu:
  pass


@dataclasses.dataclass(frozen=True)
class Residual:
  """x + body(x)."""
  body: tuple


RELU = Relu()


def _residual_blocks(prefix, width, dilations, kernel_size):
  return [Residual((RELU, ConvLayer(f"{prefix}_res{i}_dilated", width, kernel_size,
                                    dilation=dilation),
                    RELU, ConvLayer(f"{prefix}_res{i}_mix", width, 1)))
          for i, dilation in enumerate(dilations)]


def encoder_layers(code_dim, width, downsample_log2, dilations, kernel_size, down_kernel):
  """The encoder's layers: frames [T, F] -> latents [T / 2**downsample_log2, code_dim]."""
  layers = [ConvLayer("stem", width, kernel_size), RELU]
  for stage in range(downsample_log2):
    layers.append(ConvLayer(f"stage{stage}_down", width, down_kernel, stride=2))
    layers += _residual_blocks(f"stage{stage}", width, dilations, kernel_size)
  layers.append(ConvLayer("out", code_dim, kernel_size))
  return tuple(layers)


def decoder_layers(feature_dim, width, downsample_log2, dilations, kernel_size):
  """The decoder's layers: latents [S, D] -> frames [S * 2**downsample_log2, feature_dim]."""
  layers = [ConvLayer("stem", width, kernel_size), RELU]
  for stage in range(downsample_log2):
    layers += _residual_blocks(f"stage{stage}", width, dilations, kernel_size)
    layers.append(ConvLayer(f"stage{stage}_up", width, kernel_size, upsample=2))
  layers += [ConvLayer("hidden", width, kernel_size), RELU,
             ConvLayer("out", feature_dim, kernel_size)]
  return tuple(layers)


def additive_decoder_layers(feature_dim, downsample_log2):
  """A decoder affine in the latent: each step's frames are `readout` of the step's latent."""
  return (ConvLayer("readout", feature_dim, 1, upsample=2 ** downsample_log2),)


def run(layers, h, conv, relu):
  """Applies `layers` to `h`: `conv(layer, h)` computes a `ConvLayer`, `relu(h)` a `Relu`."""
  for layer in layers:
    if isinstance(layer, ConvLayer):
      h = conv(layer, h)
    elif isinstance(layer, Relu):
      h = relu(h)
    elif isinstance(layer, Residual):
      h = h + run(layer.body, h, conv, relu)
    else:
      raise TypeError(f"{layer!r} is not a ConvLayer, Relu or Residual")
  return h


def conv_layers(layers):
  """Every `ConvLayer` of `layers`, residual bodies included, in the order they run."""
  out = []
  for layer in layers:
    if isinstance(layer, Residual):
      out += conv_layers(layer.body)
    elif isinstance(layer, ConvLayer):
      out.append(layer)
  return out


def receptive_field_frames(layers):
  """How many input frames either side of an output step's own frames can change it."""
  reach, frames_per_step = 0, 1
  for layer in layers:
    if isinstance(layer, Residual):
      reach += frames_per_step * receptive_field_frames(layer.body)
    elif isinstance(layer, ConvLayer):
      if layer.upsample > 1:
        raise ValueError(f"layer {layer.name}: the receptive field of an upsampling layer list "
                         "is not computed (only the encoder's is needed)")
      reach += frames_per_step * conv1d.same_padding(layer.kernel_size, layer.dilation,
                                                     layer.stride)[1]
      frames_per_step *= layer.stride
  return reach


def to_json(layers):
  """The layers as JSON-ready dicts with a `kind`: what `model.npz` stores."""
  out = []
  for layer in layers:
    if isinstance(layer, ConvLayer):
      out.append({"kind": "conv", **dataclasses.asdict(layer)})
    elif isinstance(layer, Relu):
      out.append({"kind": "relu"})
    elif isinstance(layer, Residual):
      out.append({"kind": "residual", "body": to_json(layer.body)})
    else:
      raise TypeError(f"{layer!r} is not a ConvLayer, Relu or Residual")
  return out


def legacy_names(layers):
  """{today's conv name: its name before format 2}, Flax's automatic naming of the old modules.

  The old modules numbered their convs `Conv_<i>` in call order and gathered each run of
  consecutive residual blocks into a `ResStack_<j>` module whose convs were numbered afresh.
  """
  names, convs, stacks, in_stack = {}, 0, 0, None
  for layer in layers:
    if isinstance(layer, Residual):
      if in_stack is None:
        in_stack = [f"ResStack_{stacks}", 0]
        stacks += 1
      for conv in conv_layers(layer.body):
        names[conv.name] = f"{in_stack[0]}/Conv_{in_stack[1]}"
        in_stack[1] += 1
      continue
    in_stack = None
    if isinstance(layer, ConvLayer):
      names[layer.name] = f"Conv_{convs}"
      convs += 1
  return names
