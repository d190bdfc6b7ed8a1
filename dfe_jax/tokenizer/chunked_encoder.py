"""The JAX encoder for tokenization: videos of any length in bucketed, jitted chunks.

**Chunking rule.** A video is encoded as windows: centres of `chunk_frames` frames (a multiple
of the downsampling factor f = 2**downsample_log2) with `context` frames of real neighbours on
each side, where `context` is the encoder's one-sided receptive field rounded up to a multiple
of f. Only the centre's latent steps are kept. Every convolution of the window sees exactly the
inputs it would see in the whole video, and past the video's end (padded to a multiple of f, as
`Model.encode` does) each layer's input is zeroed, which is what the convolutions' own zero
padding does there. So chunked codes equal `Model.encode` on the whole video at once, up to
float rounding (an exact tie between two codes may then break differently); the test checks it.

**Bucketing.** Windows are padded to one of a few bucket lengths (64 * 2**k frames, and the
longest window) and batched `batch_frames // bucket` at a time, so `jax.jit` compiles once per
bucket, not once per length. The layers are the model's own (`models/architecture.py`), each
conv its `temporal_conv.Conv`, run in float32 on the model's parameters.

Shape legend: B batch (windows), T frames, F features, S latent steps, D code_dim, L levels.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from dfe_jax.models import architecture
from dfe_jax.models import quantizer as vq
from dfe_jax.models import rvq_vae
from dfe_jax.models import temporal_conv

_MIN_BUCKET = 64


def downsample_factor(model):
  """Frames per latent step of a model (`rvq_vae.Model`, which pads to this multiple)."""
  return 2 ** model.downsample_log2


def step_frames(num_steps, factor, num_frames):
  """(frame_start [S], frame_end [S]) int32: the frames each latent step covers."""
  start_S = (np.arange(num_steps) * factor).astype(np.int32)
  return start_S, np.minimum(start_S + factor, num_frames).astype(np.int32)


def receptive_field_frames(model):
  """How many frames either side of a latent step's own frames can change its code."""
  if not isinstance(model.encoder, temporal_conv.Encoder):
    return 0  # The per-frame transformer: each latent sees its own frame only.
  return architecture.receptive_field_frames(model.encoder.layers())


def _round_up(n, multiple):
  return -(-n // multiple) * multiple


def temporal_conv_encode(layers, params, x_BTF, valid_BT, length_B):
  """The encoder `layers` with weights `params` on windows whose sequences end at `length_B`.

  Positions at or past a window's length are zeroed before every convolution that mixes time,
  as the convolutions' zero padding would do at the end of a sequence of that length. The convs
  are the model's own `temporal_conv.Conv`, in float32.
  """
  frames = x_BTF.shape[1]

  def conv(layer, h_BTC):
    if layer.kernel_size > 1:
      factor = frames // h_BTC.shape[1]
      keep_BT = jnp.arange(h_BTC.shape[1])[None, :] * factor < length_B[:, None]
      h_BTC = jnp.where(keep_BT[..., None], h_BTC, 0.0)
    module = temporal_conv.conv_module(temporal_conv.Conv, layer, jnp.float32)
    return module.apply({"params": params[layer.name]}, h_BTC)

  h = jnp.where(valid_BT[..., None], x_BTF, 0.0).astype(jnp.float32)
  return architecture.run(layers, h, conv, jax.nn.relu)


def residual_codes(variables, quantizer_config, z_ND):
  """Codes [N, L] of latents: `quantizer.residual_quantize` in eval mode, all levels."""
  q = quantizer_config
  if q.kind != "rvq":
    return jnp.zeros((z_ND.shape[0], 0), jnp.int32)
  params = variables["params"].get("quantizer", {})
  residual_NE = z_ND.astype(jnp.float32)
  if q.lookup_dim:
    residual_NE = residual_NE @ params["project_in"]["kernel"] + params["project_in"]["bias"]
  codebooks_CKE = (variables["vq_stats"]["quantizer"]["codebook"] if q.learning == "ema"
                   else params["codebook"]).astype(jnp.float32)
  codes_NL, _, _ = vq.residual_quantize(residual_NE, codebooks_CKE, q.num_levels,
                                        cosine=q.cosine)
  return codes_NL


def _encode_batch(model, model_config, variables, x_BTF, valid_BT, length_B):
  """(codes [B, S, L], latents [B, S, D], latent valid [B, S]) of a batch of windows."""
  if isinstance(model.encoder, temporal_conv.Encoder):
    z_BSD = temporal_conv_encode(model.encoder.layers(), variables["params"]["encoder"], x_BTF,
                                 valid_BT, length_B)
  else:  # Frames are independent: padding cannot change the others.
    z_BSD = model.apply(variables, x_BTF, valid_BT,
                        method=lambda m, x, v: m.encoder(x, v)).astype(jnp.float32)
  batch, steps, _ = z_BSD.shape
  mask_BS = rvq_vae.latent_mask(valid_BT, model.downsample_log2)
  codes_NL = residual_codes(variables, model_config.quantizer, z_BSD.reshape(batch * steps, -1))
  return codes_NL.reshape(batch, steps, -1), z_BSD, mask_BS


@dataclasses.dataclass(frozen=True)
class _Window:
  video: int        # Index of the video in the encoded list.
  start: int        # First frame of the window.
  length: int       # Frames up to the sequence end or the right context, a multiple of f.
  keep_begin: int   # Latent steps of the window that belong to the centre: [begin, end).
  keep_end: int


class ChunkedEncoder:
  """Encodes normalised videos of any length in bucketed, jitted batches of windows."""

  def __init__(self, trained, chunk_frames=4096, batch_frames=32768):
    config = trained.config.model
    self.factor = downsample_factor(trained.model)
    self.context = _round_up(receptive_field_frames(trained.model), self.factor)
    self.chunk_frames = _round_up(max(chunk_frames, self.factor), self.factor)
    self.batch_frames = batch_frames
    self.num_features = trained.info["num_features"]
    self.variables = trained.variables
    longest = self.chunk_frames + 2 * self.context
    self.buckets = [b for b in (_MIN_BUCKET * 2 ** k for k in range(32)) if b < longest]
    self.buckets = [_round_up(b, self.factor) for b in self.buckets] + [longest]
    self._encode = jax.jit(functools.partial(_encode_batch, trained.model, config))

  def windows(self, video, num_frames):
    """The windows that cover a video of `num_frames` frames (see the module docstring)."""
    padded = _round_up(num_frames, self.factor)
    out = []
    for begin in range(0, padded, self.chunk_frames):
      end = min(begin + self.chunk_frames, padded)
      start = max(0, begin - self.context)
      stop = min(padded, end + self.context)
      out.append(_Window(video, start, stop - start, (begin - start) // self.factor,
                         (end - start) // self.factor))
    return out

  def bucket(self, length):
    """The smallest bucket length that holds a window of `length` frames."""
    return next(b for b in self.buckets if b >= length)

  def encode(self, videos):
    """[(x [T, F] normalised, valid [T])] -> [(codes [S, L], latents [S, D], valid [S])]."""
    windows = [w for v, (x, _) in enumerate(videos) for w in self.windows(v, len(x))]
    by_bucket = {}
    for w in windows:
      by_bucket.setdefault(self.bucket(w.length), []).append(w)
    pending = []
    for bucket, group in sorted(by_bucket.items()):
      size = max(1, self.batch_frames // bucket)
      for i in range(0, len(group), size):
        batch = group[i:i + size]
        x = np.zeros((size, bucket, self.num_features), np.float32)
        valid = np.zeros((size, bucket), bool)
        length = np.zeros((size,), np.int32)
        for row, w in enumerate(batch):
          vx, vvalid = videos[w.video]
          stop = min(w.start + w.length, len(vx))
          x[row, :stop - w.start] = vx[w.start:stop]
          valid[row, :stop - w.start] = vvalid[w.start:stop]
          length[row] = w.length
        # Dispatch is asynchronous: every batch is queued before the first result is read.
        pending.append((batch, self._encode(self.variables, x, valid, length)))
    pieces = {}
    for batch, result in pending:
      codes, latents, mask = jax.device_get(result)
      for row, w in enumerate(batch):
        keep = slice(w.keep_begin, w.keep_end)
        pieces.setdefault(w.video, []).append((w.start, codes[row, keep], latents[row, keep],
                                               mask[row, keep]))
    results = []
    for v in range(len(videos)):
      parts = sorted(pieces[v], key=lambda p: p[0])
      results.append(tuple(np.concatenate([p[k] for p in parts]) for k in (1, 2, 3)))
    return results
