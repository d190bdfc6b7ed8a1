"""Temporal 1-D conv encoder and decoder (T2M-GPT / MoMask style) in NWC layout.

The layers are those of `architecture.encoder_layers` / `decoder_layers` (read that module for
the architecture); `Encoder` and `Decoder` run them with `Conv`, each conv a submodule named
after its layer. `downsample_log2 = 0` gives one latent per frame and no residual stages: the
stem and output convs alone, so each latent sees `kernel_size - 1` neighbours either side (two
for the default kernel 3).

Shape legend: B batch, T frames (a multiple of 2**downsample_log2), S = T / 2**downsample_log2
latent steps, F feature_dim, W width, D code_dim.

`Conv` has `nn.Conv`'s parameters and initialisers over `lax.conv_general_dilated` with XLA's
own gradients. `config.model.conv_impl` may swap in the XLA:CPU kernels of `models/xla_cpu/`,
which run the same layers with the same parameters.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfe_jax.models import architecture
from dfe_jax.models import conv1d


class Conv(nn.Module):
  """A 1-D conv with 'same' padding (or T / stride frames out), optionally upsampling first.

  Same parameters (`kernel` [k, in, out], `bias` [out]) and initial values as
  `nn.Conv(features, (k,), strides, kernel_dilation)` with `conv1d.same_padding`; `upsample` > 1
  computes that conv of `jnp.repeat(x, upsample, axis=1)`.
  """
  features: int
  kernel_size: int
  stride: int = 1
  dilation: int = 1
  upsample: int = 1
  dtype: str = "float32"

  @nn.compact
  def weights(self, in_features):
    """(kernel [k, in_features, features], bias [features]), cast to `dtype`."""
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, in_features, self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    return kernel.astype(self.dtype), bias.astype(self.dtype)

  def __call__(self, x_BTC):
    kernel, bias = self.weights(x_BTC.shape[-1])
    x_BTC = x_BTC.astype(self.dtype)
    if self.upsample > 1:
      x_BTC = jnp.repeat(x_BTC, self.upsample, axis=1)  # Nearest-neighbour upsampling.
    return conv1d.conv1d(x_BTC, kernel, self.dilation, self.stride) + bias


def conv_module(conv_class, layer, dtype):
  """The `conv_class` submodule that computes the `architecture.ConvLayer` `layer`."""
  return conv_class(features=layer.features, kernel_size=layer.kernel_size, stride=layer.stride,
                    dilation=layer.dilation, upsample=layer.upsample, dtype=dtype, name=layer.name)


class Encoder(nn.Module):
  """Frames [B, T, F] -> latents [B, S, D]; invalid frames are zeroed before the convs."""
  code_dim: int = 128
  width: int = 256
  downsample_log2: int = 2
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  down_kernel: int = 4
  dtype: str = "float32"

  def layers(self):
    """This encoder as `architecture` layers."""
    return architecture.encoder_layers(self.code_dim, self.width, self.downsample_log2,
                                       tuple(self.dilations), self.kernel_size, self.down_kernel)

  @nn.compact
  def __call__(self, x_BTF, mask_BT):
    h = jnp.where(mask_BT[..., None], x_BTF, 0.0).astype(self.dtype)
    return architecture.run(self.layers(), h,
                            lambda layer, h: conv_module(Conv, layer, self.dtype)(h), jax.nn.relu)


class Decoder(nn.Module):
  """Latents [B, S, D] -> frames [B, S * 2**downsample_log2, F]."""
  feature_dim: int = 53
  width: int = 256
  downsample_log2: int = 2
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  dtype: str = "float32"

  def layers(self):
    """This decoder as `architecture` layers."""
    return architecture.decoder_layers(self.feature_dim, self.width, self.downsample_log2,
                                       tuple(self.dilations), self.kernel_size)

  @nn.compact
  def __call__(self, z_BSD):
    h = architecture.run(self.layers(), z_BSD.astype(self.dtype),
                         lambda layer, h: conv_module(Conv, layer, self.dtype)(h), jax.nn.relu)
    return h.astype(jnp.float32)
