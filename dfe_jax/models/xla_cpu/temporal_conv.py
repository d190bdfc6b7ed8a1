"""`models.temporal_conv`'s encoder and decoder on the XLA:CPU kernels: same layers, same maths.

Each module subclasses its plain namesake (same fields and parameter names) and computes its
convs with `xla_cpu.conv1d` and its ReLUs with `xla_cpu.activations.relu`; an upsampling conv
followed directly by a plain conv (the decoder's last stage and `hidden`) runs as one composed
conv (`Conv.followed_by`). `tests/test_models.py` holds outputs and gradients equal to the plain
model.
"""

import flax.linen as nn
import jax.numpy as jnp

from dfe_jax.models import architecture
from dfe_jax.models import temporal_conv
from dfe_jax.models.xla_cpu import conv1d
from dfe_jax.models.xla_cpu.activations import relu


class Conv(temporal_conv.Conv):
  """`temporal_conv.Conv` with custom gradients, the upsampling folded into the conv's taps."""

  def __call__(self, x_BTC):
    kernel, bias = self.weights(x_BTC.shape[-1])
    x_BTC = x_BTC.astype(self.dtype)
    if self.upsample > 1:
      y = conv1d.upsample_conv1d(x_BTC, kernel, self.upsample)
    elif self.stride > 1:
      y = conv1d.strided_conv1d(x_BTC, kernel, self.stride)
    else:
      y = conv1d.conv1d(x_BTC, kernel, self.dilation)
    return y + bias

  def followed_by(self, conv, x_BTC):
    """`conv(self(x))` for this upsampling conv and a plain `conv`, computed as one conv of x."""
    if self.upsample < 2 or (conv.stride, conv.dilation, conv.upsample) != (1, 1, 1):
      raise ValueError(f"followed_by composes an upsampling Conv with a plain stride-1 one, not "
                       f"upsample={self.upsample} with stride={conv.stride}, "
                       f"dilation={conv.dilation}, upsample={conv.upsample}")
    up_kernel, up_bias = self.weights(x_BTC.shape[-1])
    kernel, bias = conv.weights(self.features)
    y = conv1d.upsample_conv1d_then_conv1d(x_BTC.astype(self.dtype), up_kernel, up_bias,
                                           kernel.astype(self.dtype), self.upsample)
    return y + bias.astype(self.dtype)


def _composable(first, second):
  """Whether `first` upsamples and `second` is a plain conv: `Conv.followed_by` runs them."""
  return (isinstance(first, architecture.ConvLayer) and first.upsample > 1
          and isinstance(second, architecture.ConvLayer)
          and (second.stride, second.dilation, second.upsample) == (1, 1, 1))


def run(layers, h, dtype):
  """`architecture.run` on these kernels, each upsampling conv composed with a plain one after."""
  def module(layer):
    return temporal_conv.conv_module(Conv, layer, dtype)

  i = 0
  while i < len(layers):
    if i + 1 < len(layers) and _composable(layers[i], layers[i + 1]):
      h = module(layers[i]).followed_by(module(layers[i + 1]), h)
      i += 2
    else:
      h = architecture.run(layers[i:i + 1], h, lambda layer, h: module(layer)(h), relu)
      i += 1
  return h


class Encoder(temporal_conv.Encoder):
  """`temporal_conv.Encoder` on `Conv` and `relu`."""

  @nn.compact
  def __call__(self, x_BTF, mask_BT):
    h = jnp.where(mask_BT[..., None], x_BTF, 0.0).astype(self.dtype)
    return run(self.layers(), h, self.dtype)


class Decoder(temporal_conv.Decoder):
  """`temporal_conv.Decoder` on `Conv` and `relu`, an upsampling conv and the next composed."""

  @nn.compact
  def __call__(self, z_BSD):
    return run(self.layers(), z_BSD.astype(self.dtype), self.dtype).astype(jnp.float32)
