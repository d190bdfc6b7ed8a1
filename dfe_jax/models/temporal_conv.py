"""Temporal 1-D conv encoder and decoder (T2M-GPT / MoMask style) in NWC layout.

Encoder: conv stem -> `downsample_log2` x [strided conv (kernel 4, stride 2) -> dilated residual
stack] -> conv to `code_dim`. Decoder mirrors it: conv -> per stage [residual stack -> nearest x2
upsample -> conv] -> conv + ReLU -> conv to `feature_dim`. `downsample_log2 = 0` gives one latent
per frame that still sees temporal context through the dilated stacks.

Shape legend: B batch, T frames (a multiple of 2**downsample_log2), S = T / 2**downsample_log2
latent steps, F feature_dim, W width, D code_dim.
"""

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def _conv(features, kernel, dtype, stride=1, dilation=1, name=None):
  """Length-preserving (or stride-dividing) 1-D conv with symmetric explicit padding."""
  total = dilation * (kernel - 1) - (stride - 1)
  pad = (total // 2, total - total // 2)
  return nn.Conv(features, (kernel,), strides=(stride,), kernel_dilation=(dilation,),
                 padding=(pad,), dtype=dtype, name=name)


class ResStack(nn.Module):
  """Residual blocks x + Conv1x1(ReLU(Conv_k,dilated(ReLU(x)))), one per dilation."""
  width: int
  dilations: Sequence[int] = (9, 3, 1)
  kernel_size: int = 3
  dtype: str = "float32"

  @nn.compact
  def __call__(self, h_BTW):
    for dilation in self.dilations:
      r_BTW = _conv(self.width, self.kernel_size, self.dtype, dilation=dilation)(nn.relu(h_BTW))
      h_BTW = h_BTW + _conv(self.width, 1, self.dtype)(nn.relu(r_BTW))
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
    h = nn.relu(_conv(self.width, self.kernel_size, self.dtype)(h))
    for _ in range(self.downsample_log2):
      h = _conv(self.width, self.down_kernel, self.dtype, stride=2)(h)
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
    return _conv(self.code_dim, self.kernel_size, self.dtype)(h)


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
    h = nn.relu(_conv(self.width, self.kernel_size, self.dtype)(z_BSD.astype(self.dtype)))
    for _ in range(self.downsample_log2):
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype)(h)
      h = jnp.repeat(h, 2, axis=1)  # Nearest-neighbour upsampling in time.
      h = _conv(self.width, self.kernel_size, self.dtype)(h)
    h = nn.relu(_conv(self.width, self.kernel_size, self.dtype)(h))
    return _conv(self.feature_dim, self.kernel_size, self.dtype)(h).astype(jnp.float32)
