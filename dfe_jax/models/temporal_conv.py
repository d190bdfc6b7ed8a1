"""Temporal 1-D conv encoder and decoder (T2M-GPT / MoMask style) in NWC layout.

Encoder: conv stem -> `downsample_log2` x [strided conv (kernel 4, stride 2) -> dilated residual
stack] -> conv to `code_dim`. Decoder mirrors it: conv -> per stage [residual stack -> nearest x2
upsample -> conv] -> conv + ReLU -> conv to `feature_dim`. `downsample_log2 = 0` gives one latent
per frame that still sees temporal context through the dilated stacks.

Shape legend: B batch, T frames (a multiple of 2**downsample_log2), S = T / 2**downsample_log2
latent steps, F feature_dim, W width, D code_dim.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# How a conv runs: "taps" (default) multiplies the input once by all taps side by side and adds
# the time-shifted products; "im2col" gathers the shifted inputs and multiplies once; "xla" is
# `lax.conv_general_dilated` (flax `nn.Conv`). All give the same numbers up to rounding.
CONV_IMPL = "taps"


def _shift_time(y_BTC, offset, steps):
  """y[:, t + offset] for t in [0, steps), zero where t + offset falls outside y."""
  length = y_BTC.shape[1]
  lo, hi = max(0, offset), min(length, offset + steps)
  if hi <= lo:
    return jnp.zeros((y_BTC.shape[0], steps, y_BTC.shape[2]), y_BTC.dtype)
  part = y_BTC[:, lo:hi]
  return jnp.pad(part, ((0, 0), (lo - offset, steps - (hi - offset)), (0, 0)))


def _shifted_matmul(x_BTC, taps, steps, bias, impl):
  """sum_i x[:, t + offset_i] @ w_i + bias for t < steps (x zero outside); taps = [(offset, w)].

  "taps" computes x @ [w_0 | w_1 | ...] as ONE wide GEMM over the input rows and adds shifted
  column blocks of the product: a plain row-major GEMM forward and backward, no im2col copy of the
  input, and the shifts/adds fuse into one elementwise pass. "im2col" copies the shifted inputs
  side by side and runs one deep GEMM instead.
  """
  batch, _, cin = x_BTC.shape
  cout = taps[0][1].shape[-1]
  if len(taps) == 1 and taps[0][0] == 0 and steps == x_BTC.shape[1]:
    y = jnp.dot(x_BTC.reshape(-1, cin), taps[0][1]).reshape(batch, steps, cout)
  elif impl == "im2col" or cin < cout:
    # Few input channels (the stem's 53 features): one deep GEMM (K = taps x 53) runs far
    # faster than a skinny-K wide one, and its backward needs no taps-wide gradient.
    cols = jnp.concatenate([_shift_time(x_BTC, o, steps) for o, _ in taps], axis=-1)
    w = jnp.concatenate([w for _, w in taps], axis=0)
    y = jnp.dot(cols.reshape(batch * steps, w.shape[0]), w).reshape(batch, steps, cout)
  else:
    w = jnp.concatenate([w for _, w in taps], axis=1)
    p = jnp.dot(x_BTC.reshape(-1, cin), w).reshape(batch, x_BTC.shape[1], len(taps), cout)
    y = _sum_shifted(p, [o for o, _ in taps], steps)
  return y + bias


def _sum_shifted(p_BTMC, offsets, steps):
  """sum_m p[:, t + offsets[m], m] for t < steps (zero outside): slices, pads and adds that XLA
  fuses into the consumers (padding p once instead writes the padded copy: more traffic)."""
  return sum(_shift_time(p_BTMC[:, :, m], o, steps) for m, o in enumerate(offsets))


def conv1d(x_BTC, kernel_KIO, bias_O, stride=1, dilation=1, padding=(0, 0), upsample=1,
           impl=None):
  """`lax.conv_general_dilated` in NWC/WIO layout (plus nearest upsampling first) as GEMMs.

  Computes conv(repeat(x, upsample, time), kernel, stride, dilation, padding) + bias without
  forming the upsampled input: output phase r of an upsampled conv reads input frame
  t + floor((r + j*dilation - pad) / upsample) for tap j, so taps landing on the same frame are
  summed first (k=3, x2: 4 weight blocks at the low rate instead of 6 at the high rate, i.e. 2/3
  of the FLOPs). A strided conv regroups `stride` frames into channels (polyphase), which makes it
  a stride-1 conv with ceil(k/stride) taps over stride*C channels: no strided gathers.
  """
  impl = impl or CONV_IMPL
  taps_k, cin, cout = kernel_KIO.shape
  lo, hi = padding
  if impl == "xla":
    if upsample > 1:
      x_BTC = jnp.repeat(x_BTC, upsample, axis=1)
    y = jax.lax.conv_general_dilated(x_BTC, kernel_KIO, (stride,), [(lo, hi)],
                                     rhs_dilation=(dilation,),
                                     dimension_numbers=("NWC", "WIO", "NWC"))
    return y + bias_O
  length = x_BTC.shape[1]
  if upsample > 1:
    if stride != 1:
      raise ValueError("conv1d: upsampling with a strided conv is not supported")
    out_len = upsample * length + lo + hi - dilation * (taps_k - 1)
    if out_len != upsample * length:
      raise ValueError("conv1d: an upsampled conv must preserve length")
    phases = []
    for r in range(upsample):
      by_offset = {}
      for j in range(taps_k):
        o = (r + j * dilation - lo) // upsample
        by_offset[o] = by_offset[o] + kernel_KIO[j] if o in by_offset else kernel_KIO[j]
      phases.append(sorted(by_offset.items()))
    # One GEMM for every phase's blocks, then per-phase shifted sums interleaved in time.
    taps = [t for phase in phases for t in phase]
    if impl == "im2col":
      ys = [_shifted_matmul(x_BTC, phase, length, bias_O, impl) for phase in phases]
    else:
      batch = x_BTC.shape[0]
      w = jnp.concatenate([w for _, w in taps], axis=1)
      p = jnp.dot(x_BTC.reshape(-1, cin), w).reshape(batch, length, len(taps), cout)
      ys, i = [], 0
      for phase in phases:
        ys.append(_sum_shifted(p[:, :, i:i + len(phase)], [o for o, _ in phase], length)
                  + bias_O)
        i += len(phase)
    return jnp.stack(ys, axis=2).reshape(x_BTC.shape[0], upsample * length, cout)
  out_len = (length + lo + hi - dilation * (taps_k - 1) - 1) // stride + 1
  if stride == 1:
    taps = [(j * dilation - lo, kernel_KIO[j]) for j in range(taps_k)]
    return _shifted_matmul(x_BTC, taps, out_len, bias_O, impl)
  # Polyphase: padded frame s*u + b -> group u, channel block b; tap j = s*a + b -> group tap a.
  if dilation > 1:
    raise NotImplementedError("conv1d: dilated strided convs are not supported")
  group_taps = -(-taps_k // stride)
  groups = out_len + group_taps - 1
  x_pad = jnp.pad(x_BTC, ((0, 0), (lo, 0), (0, 0)))
  x_pad = _shift_time(x_pad, 0, stride * groups)  # Right zero pad or trim to whole groups.
  x_BUC = x_pad.reshape(x_BTC.shape[0], groups, stride * cin)
  zeros = jnp.zeros((cin, cout), kernel_KIO.dtype)
  taps = [(a, jnp.concatenate([kernel_KIO[stride * a + b] if stride * a + b < taps_k else zeros
                               for b in range(stride)], axis=0)) for a in range(group_taps)]
  return _shifted_matmul(x_BUC, taps, out_len, bias_O, impl)


class Conv(nn.Module):
  """A 1-D `nn.Conv` (same parameter names, shapes, initialisers and so the same init values)
  that runs as GEMMs via `conv1d`; `upsample` > 1 applies nearest upsampling first."""
  features: int
  kernel_size: int
  strides: int = 1
  kernel_dilation: int = 1
  padding: Sequence[int] = (0, 0)
  upsample: int = 1
  dtype: Any = None

  @nn.compact
  def __call__(self, x_BTC):
    kernel = self.param("kernel", nn.initializers.lecun_normal(),
                        (self.kernel_size, x_BTC.shape[-1], self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    x_BTC, kernel, bias = nn.dtypes.promote_dtype(x_BTC, kernel, bias, dtype=self.dtype)
    return conv1d(x_BTC, kernel, bias, self.strides, self.kernel_dilation, tuple(self.padding),
                  self.upsample)


def _conv(features, kernel, dtype, stride=1, dilation=1, upsample=1, name=None):
  """Length-preserving (or stride-dividing) 1-D conv with symmetric explicit padding."""
  total = dilation * (kernel - 1) - (stride - 1)
  pad = (total // 2, total - total // 2)
  return Conv(features, kernel, strides=stride, kernel_dilation=dilation, padding=pad,
              upsample=upsample, dtype=dtype, name=name)


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
      # Nearest-neighbour x2 upsampling in time, folded into the conv (see `conv1d`).
      h = _conv(self.width, self.kernel_size, self.dtype, upsample=2)(h)
    h = nn.relu(_conv(self.width, self.kernel_size, self.dtype)(h))
    return _conv(self.feature_dim, self.kernel_size, self.dtype)(h).astype(jnp.float32)
