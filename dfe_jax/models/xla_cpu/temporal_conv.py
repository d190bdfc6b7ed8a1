"""`models.temporal_conv`'s encoder and decoder on the XLA:CPU kernels: same parameters, same maths.

Each module subclasses its plain namesake (same fields, class names and so `Conv_<i>` parameter
names) and computes its convs with `xla_cpu.conv1d` and its ReLUs with `xla_cpu.activations.relu`;
the decoder's last upsampling conv and the conv after it run as one composed conv
(`Conv.followed_by`). `tests/test_models.py` holds outputs and gradients equal to the plain model.
"""

import flax.linen as nn
import jax.numpy as jnp

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


class ResStack(temporal_conv.ResStack):
  """`temporal_conv.ResStack` on `Conv` and `relu`."""

  @nn.compact
  def __call__(self, h_BTW):
    for dilation in self.dilations:
      r_BTW = Conv(self.width, self.kernel_size, dilation=dilation, dtype=self.dtype)(relu(h_BTW))
      h_BTW = h_BTW + Conv(self.width, 1, dtype=self.dtype)(relu(r_BTW))
    return h_BTW


class Encoder(temporal_conv.Encoder):
  """`temporal_conv.Encoder` on `Conv`, `ResStack` and `relu`."""

  @nn.compact
  def __call__(self, x_BTF, mask_BT):
    h = jnp.where(mask_BT[..., None], x_BTF, 0.0).astype(self.dtype)
    h = relu(Conv(self.width, self.kernel_size, dtype=self.dtype)(h))
    for _ in range(self.downsample_log2):
      h = Conv(self.width, self.down_kernel, stride=2, dtype=self.dtype)(h)
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
    return Conv(self.code_dim, self.kernel_size, dtype=self.dtype)(h)


class Decoder(temporal_conv.Decoder):
  """`temporal_conv.Decoder` on `Conv`, `ResStack` and `relu`, its last two convs composed."""

  @nn.compact
  def __call__(self, z_BSD):
    h = relu(Conv(self.width, self.kernel_size, dtype=self.dtype)(z_BSD.astype(self.dtype)))
    upsamples = [Conv(self.width, self.kernel_size, upsample=2, dtype=self.dtype)
                 for _ in range(self.downsample_log2)]
    conv = Conv(self.width, self.kernel_size, dtype=self.dtype)
    for stage, upsample in enumerate(upsamples):
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
      if stage < len(upsamples) - 1:
        h = upsample(h)
    h = relu(upsamples[-1].followed_by(conv, h) if upsamples else conv(h))
    h = Conv(self.feature_dim, self.kernel_size, dtype=self.dtype)(h)
    return h.astype(jnp.float32)
