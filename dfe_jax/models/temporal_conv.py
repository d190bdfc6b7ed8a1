"""Temporal 1-D conv encoder and decoder (T2M-GPT / MoMask style) in NWC layout.

Encoder: conv stem -> `downsample_log2` x [strided conv (kernel 4, stride 2) -> dilated residual
stack] -> conv to `code_dim`. Decoder mirrors it: conv -> per stage [residual stack -> nearest x2
upsample -> conv] -> conv + ReLU -> conv to `feature_dim`. `downsample_log2 = 0` gives one latent
per frame that still sees temporal context through the dilated stacks.

The decoder's upsample-then-conv runs folded (`UpsampleConv`): nearest upsampling repeats every
frame, so taps that land on the same input frame can be summed first, and each output phase is a
shorter conv at the low rate (k=3: 2 taps per output instead of 3, a third fewer FLOPs, and no
upsampled copy). Parameter names and shapes are those of the plain `nn.Conv`, so checkpoints and
`numpy_tokenizer` (which still upsamples, then convolves) see the same model.

Shape legend: B batch, T frames (a multiple of 2**downsample_log2), S = T / 2**downsample_log2
latent steps, F feature_dim, W width, D code_dim.
"""

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def _conv(features, kernel, dtype, stride=1, dilation=1, name=None):
  """Length-preserving (or stride-dividing) 1-D conv with symmetric explicit padding."""
  total = dilation * (kernel - 1) - (stride - 1)
  pad = (total // 2, total - total // 2)
  return nn.Conv(features, (kernel,), strides=(stride,), kernel_dilation=(dilation,),
                 padding=(pad,), dtype=dtype, name=name)


def upsample_phase_taps(kernel_size, factor):
  """For each output phase r of nearest-upsample-by-`factor` then a 'same' conv: {offset: taps}.

  Output frame factor*t + r reads upsampled frame factor*t + r + j - pad through tap j, which is
  input frame t + (r + j - pad) // factor; the taps sharing an offset act on the same frame.
  """
  pad = (kernel_size - 1) // 2
  phases = []
  for r in range(factor):
    by_offset = {}
    for j in range(kernel_size):
      by_offset.setdefault((r + j - pad) // factor, []).append(j)
    phases.append(by_offset)
  return phases


class UpsampleConv(nn.Module):
  """Nearest x`factor` upsampling in time then a 'same' conv, folded into one conv per phase.

  Same parameters (`kernel` [k, in, out], `bias`), initialisers and outputs (up to float
  rounding) as `jnp.repeat(h, factor, 1)` followed by `nn.Conv(features, (k,), padding="SAME")`.
  """
  features: int
  kernel_size: int = 3
  factor: int = 2
  dtype: str = "float32"

  @nn.compact
  def __call__(self, h_BSW):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, h_BSW.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    h_BSW, kernel = h_BSW.astype(self.dtype), kernel.astype(self.dtype)
    phases = []
    for by_offset in upsample_phase_taps(self.kernel_size, self.factor):
      lo, hi = min(by_offset), max(by_offset)
      # Offsets are consecutive (j steps by 1), so the folded kernel has no empty tap.
      folded = jnp.stack([sum(kernel[j] for j in by_offset[o]) for o in range(lo, hi + 1)])
      phases.append(jax.lax.conv_general_dilated(
          h_BSW, folded, (1,), [(-lo, hi)], dimension_numbers=("NWC", "WIO", "NWC")))
    batch, steps, _ = h_BSW.shape
    y_BTW = jnp.stack(phases, axis=2).reshape(batch, steps * self.factor, self.features)
    return y_BTW + bias.astype(self.dtype)


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
    # Explicit names: the upsampling convs are another class but keep nn.Conv's `Conv_<i>` names.
    n = self.downsample_log2
    h = _conv(self.width, self.kernel_size, self.dtype, name="Conv_0")(z_BSD.astype(self.dtype))
    h = nn.relu(h)
    for stage in range(n):
      h = ResStack(self.width, self.dilations, self.kernel_size, self.dtype,
                   name=f"ResStack_{stage}")(h)
      h = UpsampleConv(self.width, self.kernel_size, 2, self.dtype, name=f"Conv_{stage + 1}")(h)
    h = nn.relu(_conv(self.width, self.kernel_size, self.dtype, name=f"Conv_{n + 1}")(h))
    h = _conv(self.feature_dim, self.kernel_size, self.dtype, name=f"Conv_{n + 2}")(h)
    return h.astype(jnp.float32)
