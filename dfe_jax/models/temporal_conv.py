"""Temporal 1-D conv encoder and decoder (T2M-GPT / MoMask style) in NWC layout.

Encoder: conv stem -> `downsample_log2` x [strided conv (kernel 4, stride 2) -> dilated residual
stack] -> conv to `code_dim`. Decoder mirrors it: conv -> per stage [residual stack -> nearest x2
upsample -> conv] -> conv + ReLU -> conv to `feature_dim`. `downsample_log2 = 0` gives one latent
per frame that still sees temporal context through the dilated stacks.

Shape legend: B batch, T frames (a multiple of 2**downsample_log2), S = T / 2**downsample_log2
latent steps, F feature_dim, W width, D code_dim.

Every conv is `Conv`: `nn.Conv`'s parameters, initialisers and `Conv_<i>` names (so checkpoints,
`chunked_encoder` and `numpy_tokenizer` read the same weights) over `lax.conv_general_dilated`
with XLA's own gradients. `config.model.conv_impl` may swap in the XLA:CPU kernels of
`models/xla_cpu/`, which compute the same model with the same parameters.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

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


class ResStack(nn.Module):
  """Residual blocks x + Conv1x1(ReLU(Conv_k,dilated(ReLU(x)))), one per dilation."""
  width: int
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  dtype: str = "float32"

  @nn.compact
  def __call__(self, h_BTW):
    for dilation in self.dilations:
      r_BTW = Conv(self.width, self.kernel_size, dilation=dilation, dtype=self.dtype)(
          jax.nn.relu(h_BTW))
      h_BTW = h_BTW + Conv(self.width, 1, dtype=self.dtype)(jax.nn.relu(r_BTW))
    return h_BTW


class Encoder(nn.Module):
  """Frames [B, T, F] -> latents [B, S, D]; invalid frames are zeroed before the convs."""
  code_dim: int = 128
  width: int = 256
  downsample_log2: int = 2
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  down_kernel: int = 4
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x_BTF, mask_BT):
    h = jnp.where(mask_BT[..., None], x_BTF, 0.0).astype(self.dtype)
    h = jax.nn.relu(Conv(self.width, self.kernel_size, dtype=self.dtype)(h))
    for _ in range(self.downsample_log2):
      h = Conv(self.width, self.down_kernel, stride=2, dtype=self.dtype)(h)
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
    return Conv(self.code_dim, self.kernel_size, dtype=self.dtype)(h)


class Decoder(nn.Module):
  """Latents [B, S, D] -> frames [B, S * 2**downsample_log2, F]."""
  feature_dim: int = 53
  width: int = 256
  downsample_log2: int = 2
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  dtype: str = "float32"

  @nn.compact
  def __call__(self, z_BSD):
    h = Conv(self.width, self.kernel_size, dtype=self.dtype)(z_BSD.astype(self.dtype))
    h = jax.nn.relu(h)
    for _ in range(self.downsample_log2):
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
      h = Conv(self.width, self.kernel_size, upsample=2, dtype=self.dtype)(h)
    h = jax.nn.relu(Conv(self.width, self.kernel_size, dtype=self.dtype)(h))
    h = Conv(self.feature_dim, self.kernel_size, dtype=self.dtype)(h)
    return h.astype(jnp.float32)
