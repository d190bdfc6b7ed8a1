"""A NumPy-only tokenizer for an exported `model.npz`: normalise -> encoder -> RVQ -> codes, and
codes -> decoder -> expression vectors. It imports nothing but NumPy and the standard library,
so this one file can be copied to a machine without JAX.

  tok = NumpyTokenizer.load("model.npz")
  out = tok.encode(features_TF, valid_T)          # {"codes" [S, L], "latents" [S, D], "valid" [S]}
  many = tok.encode_many([(tok.normalize(x, v), v) for x, v in videos])   # batched: faster
  x_TF = tok.decode(out["codes"], num_frames=len(features_TF))

It computes what `dfe_jax.tokenizer.tokenize_lib` computes: the encoder and decoder layer lists
that `model.npz` carries (written from `dfe_jax.models.architecture`), each conv an im2col
matmul (BLAS), long videos in chunks with receptive-field context (codes equal whole-video encoding),
nearest codes by ||r||^2 - 2 r.c + ||c||^2 in float32 with ties going to the lowest index (as
`jnp.argmin`), and a skipped level (-1) adding a zero vector when decoding. Codes may differ
from the JAX path only where two codes are equally near within float rounding.

Shape legend: T frames, F features, S latent steps, D code_dim, E lookup dim, L levels,
K codes per codebook, C channels.
"""

import json

import numpy as np

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)  # 1: before the layer lists (no `*_layers_json`; Flax's layer names).
_F32 = np.float32


class ModelFileError(ValueError):
  """A model.npz this tokenizer cannot use; the message names the file and what is wrong."""


def _round_up(n, multiple):
  return -(-n // multiple) * multiple


def _relu(x):
  return np.maximum(x, 0.0)


def _l2_normalize(x, eps=1e-6):
  return x / np.sqrt(np.maximum(np.sum(x * x, axis=-1, keepdims=True), eps * eps))


def _same_padding(kernel, dilation=1, stride=1):
  total = dilation * (kernel - 1) - (stride - 1)
  return total // 2, total - total // 2


def _run(layers, h, conv):
  """Applies a layer list (`architecture.to_json`'s dicts): conv(layer, h), ReLU, x + body(x)."""
  for layer in layers:
    if layer["kind"] == "conv":
      h = conv(layer, h)
    elif layer["kind"] == "relu":
      h = _relu(h)
    else:
      h = h + _run(layer["body"], h, conv)
  return h


def _convs(layers):
  """Every conv layer of a list, residual bodies included; unknown kinds raise ValueError."""
  out = []
  for layer in layers:
    if layer.get("kind") == "conv":
      out.append(layer)
    elif layer.get("kind") == "residual":
      out += _convs(layer["body"])
    elif layer.get("kind") != "relu":
      raise ValueError(f"layer {layer.get('name', layer)!r} has kind {layer.get('kind')!r}, "
                       "not conv, relu or residual: written by a newer dfe_jax?")
  return out


def _frames_per_step(layers):
  """Input frames per output step: the product of the layers' strides."""
  return int(np.prod([layer["stride"] for layer in layers if layer["kind"] == "conv"]))


def _receptive_field_frames(layers):
  """Input frames either side of an output step's own frames that can change it."""
  reach, frames_per_step = 0, 1
  for layer in layers:
    if layer["kind"] == "residual":
      reach += frames_per_step * _receptive_field_frames(layer["body"])
    elif layer["kind"] == "conv":
      reach += frames_per_step * _same_padding(layer["kernel_size"], layer["dilation"],
                                               layer["stride"])[1]
      frames_per_step *= layer["stride"]
  return reach


def _format1_layers(model_config):
  """(encoder, decoder) layer lists of a format-1 file, which predates them: the architecture
  of those versions under Flax's automatic names. Frozen; a test holds it equal to
  `architecture`'s lists renamed by `architecture.legacy_names`."""
  conv = model_config["conv"]
  k, n, width = conv["kernel_size"], model_config["downsample_log2"], model_config["width"]

  def c(name, features, kernel, stride=1, dilation=1, upsample=1):
    return {"kind": "conv", "name": name, "features": features, "kernel_size": kernel,
            "stride": stride, "dilation": dilation, "upsample": upsample}

  def stack(stage):
    return [{"kind": "residual", "body": [
        {"kind": "relu"}, c(f"ResStack_{stage}/Conv_{2 * i}", width, k, dilation=d),
        {"kind": "relu"}, c(f"ResStack_{stage}/Conv_{2 * i + 1}", width, 1)]}
            for i, d in enumerate(conv["dilations"])]

  encoder = [c("Conv_0", width, k), {"kind": "relu"}]
  decoder = [c("Conv_0", width, k), {"kind": "relu"}]
  for s in range(n):
    encoder += [c(f"Conv_{s + 1}", width, conv["down_kernel"], stride=2)] + stack(s)
    decoder += stack(s) + [c(f"Conv_{s + 1}", width, k, upsample=2)]
  encoder.append(c(f"Conv_{n + 1}", model_config["code_dim"], k))
  decoder += [c(f"Conv_{n + 1}", width, k), {"kind": "relu"},
              c(f"Conv_{n + 2}", model_config["feature_dim"], k)]
  return encoder, decoder


class NumpyTokenizer:
  """An exported model: weights, codebooks, normalisation and config, applied with NumPy."""

  def __init__(self, arrays, path="model.npz"):
    version = int(arrays["format_version"]) if "format_version" in arrays else None
    if version not in READABLE_VERSIONS:
      raise ModelFileError(f"{path}: model.npz format {version}; this tokenizer reads formats "
                           f"{', '.join(map(str, READABLE_VERSIONS))}: export it again with the "
                           "dfe_jax that reads it")
    required = ["config_json", "feature_names", "fps", "norm_mode", "norm_mean", "norm_std"]
    required += ["encoder_layers_json", "decoder_layers_json"] if version >= 2 else []
    missing = [k for k in required if k not in arrays]
    if missing:
      raise ModelFileError(f"{path}: model.npz format {version} lacks {', '.join(missing)}")
    self.config = json.loads(str(arrays["config_json"]))
    self.model_config = self.config["model"]
    if self.model_config["name"] != "temporal_conv":
      raise ModelFileError(f"{path}: the NumPy tokenizer supports temporal_conv models, not "
                           f"{self.model_config['name']!r}")
    self.feature_names = tuple(str(n) for n in arrays["feature_names"])
    self.fps = float(arrays["fps"])
    self.norm_mode = str(arrays["norm_mode"])
    self.norm_mean = arrays["norm_mean"].astype(_F32)
    self.norm_std = arrays["norm_std"].astype(_F32)
    self.params = {k[len("params/"):]: v.astype(_F32) for k, v in arrays.items()
                   if k.startswith("params/")}
    if version == 1:
      self.encoder_layers, self.decoder_layers = _format1_layers(self.model_config)
    else:
      self.encoder_layers = json.loads(str(arrays["encoder_layers_json"]))
      self.decoder_layers = json.loads(str(arrays["decoder_layers_json"]))
    for part in ("encoder", "decoder"):
      self._check_weights(path, part)
    q = self.model_config["quantizer"]
    self.has_codes = q["kind"] == "rvq"
    if self.has_codes and "codebooks" not in arrays:
      raise ModelFileError(f"{path}: model.npz of an RVQ model lacks codebooks")
    self.codebooks_CKE = arrays["codebooks"].astype(_F32) if self.has_codes else None
    self.num_levels = q["num_levels"] if self.has_codes else 0
    self.cosine = bool(q["cosine"]) if self.has_codes else False
    self.lookup_dim = int(q["lookup_dim"]) if self.has_codes else 0
    self.factor = _frames_per_step(self.encoder_layers)
    self.context = _round_up(_receptive_field_frames(self.encoder_layers), self.factor)

  def _check_weights(self, path, part):
    """Every conv of the `part` layer list has its kernel and bias, of the layer's shape."""
    try:
      convs = _convs(getattr(self, part + "_layers"))
    except ValueError as e:
      raise ModelFileError(f"{path}: {part} {e}") from None
    for layer in convs:
      name = f"{part}/{layer['name']}"
      kernel, bias = self.params.get(name + "/kernel"), self.params.get(name + "/bias")
      if kernel is None or bias is None:
        raise ModelFileError(f"{path}: layer {name} has no weights (params/{name}/kernel and "
                             "/bias)")
      if kernel.shape[0] != layer["kernel_size"] or kernel.shape[2] != layer["features"] or (
          bias.shape != (layer["features"],)):
        raise ModelFileError(
            f"{path}: layer {name} has weights {kernel.shape} + {bias.shape}, not kernel "
            f"{layer['kernel_size']} taps to {layer['features']} features")

  @classmethod
  def load(cls, path):
    """Reads a `model.npz` written by `python -m dfe_jax.export`."""
    try:
      with np.load(path, allow_pickle=False) as data:
        arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError, EOFError) as e:  # Never NumPy's advice to unpickle the file.
      raise ModelFileError(f"{path}: not a readable model.npz") from e
    return cls(arrays, path)

  def normalize(self, x_TF, valid_T=None, subject_mean=None):
    """Normalised frames; in `subject` mode the subject's mean is removed (by default the mean
    of this video's valid frames: pass the mean over all of the subject's videos to match
    `dfe_jax.tokenize`)."""
    x_TF = np.asarray(x_TF, _F32)
    valid_T = np.ones(len(x_TF), bool) if valid_T is None else np.asarray(valid_T, bool)
    if x_TF.ndim != 2 or x_TF.shape[1] != len(self.feature_names):
      raise ValueError(f"features have shape {x_TF.shape}; the model expects "
                       f"[frames, {len(self.feature_names)}]")
    offset = self.norm_mean
    if self.norm_mode == "subject":
      if subject_mean is None:
        kept = x_TF[valid_T].astype(np.float64)
        subject_mean = kept.mean(0) if len(kept) else np.zeros(x_TF.shape[1])
      offset = np.asarray(subject_mean, _F32)
    return np.where(valid_T[:, None], (x_TF - offset) / self.norm_std, 0.0).astype(_F32)

  # --- encoder -------------------------------------------------------------------------------

  def _conv(self, x_BTC, part, layer):
    """A conv layer of `part` on a batch [B, T, C] as one im2col matmul (BLAS wants big M)."""
    name = f"{part}/{layer['name']}"
    kernel, bias = self.params[name + "/kernel"], self.params[name + "/bias"]
    if layer["upsample"] > 1:
      x_BTC = np.repeat(x_BTC, layer["upsample"], axis=1)  # Nearest-neighbour upsampling.
    dilation, stride = layer["dilation"], layer["stride"]
    taps, channels, out = kernel.shape
    left, right = _same_padding(taps, dilation, stride)
    batch, steps = x_BTC.shape[0], x_BTC.shape[1] // stride
    if left or right:
      x_BTC = np.pad(x_BTC, ((0, 0), (left, right), (0, 0)))
    if taps == 1:
      cols = x_BTC
    else:
      cols = np.empty((batch, steps, taps * channels), _F32)
      for j in range(taps):
        start = j * dilation
        cols[:, :, j * channels:(j + 1) * channels] = x_BTC[
            :, start:start + stride * (steps - 1) + 1:stride]
    y = cols.reshape(batch * steps, -1) @ kernel.reshape(taps * channels, out)
    y += bias
    return y.reshape(batch, steps, out)

  def _encode_windows(self, x_BTF, length_B):
    """Latents [B, T / f, D] of windows whose sequences end at `length_B` frames (tokenize_lib):
    positions at or past the length are zeroed before each conv that mixes time."""
    frames = x_BTF.shape[1]

    def conv(layer, h_BTC):
      if layer["kernel_size"] > 1:
        factor = frames // h_BTC.shape[1]
        keep_BT = np.arange(h_BTC.shape[1])[None, :] * factor < length_B[:, None]
        h_BTC = h_BTC if keep_BT.all() else h_BTC * keep_BT[..., None]
      return self._conv(h_BTC, "encoder", layer)

    return _run(self.encoder_layers, x_BTF, conv)

  def _windows(self, num_frames, chunk_frames):
    """(start, length, keep_begin, keep_end) of the windows covering a video (tokenize_lib)."""
    padded = _round_up(num_frames, self.factor)
    chunk = _round_up(max(chunk_frames, self.factor), self.factor)
    out = []
    for begin in range(0, padded, chunk):
      end = min(begin + chunk, padded)
      start, stop = max(0, begin - self.context), min(padded, end + self.context)
      out.append((start, stop - start, (begin - start) // self.factor,
                  (end - start) // self.factor))
    return out

  def encode_latents_many(self, videos, chunk_frames=4096, batch_frames=32768):
    """[(x [T, F] normalised, valid [T])] -> [(latents [S, D], valid [S])], windows of equal
    length batched together so every matmul is large."""
    groups = {}
    for v, (x_TF, _) in enumerate(videos):
      if len(x_TF) == 0:
        raise ValueError("empty video (0 frames)")
      for window in self._windows(len(x_TF), chunk_frames):
        groups.setdefault(window[1], []).append((v, window))
    pieces = {}
    for length, group in groups.items():
      size = max(1, batch_frames // length)
      for i in range(0, len(group), size):
        batch = group[i:i + size]
        x_BTF = np.zeros((len(batch), length, videos[0][0].shape[1]), _F32)
        for row, (v, (start, _, _, _)) in enumerate(batch):
          x_TF, valid_T = videos[v]
          piece = slice(start, min(start + length, len(x_TF)))
          x_BTF[row, :piece.stop - start] = np.where(valid_T[piece, None], x_TF[piece], 0.0)
        z_BSD = self._encode_windows(x_BTF, np.full(len(batch), length))
        for row, (v, (start, _, keep_begin, keep_end)) in enumerate(batch):
          pieces.setdefault(v, []).append((start, z_BSD[row, keep_begin:keep_end]))
    results = []
    for v, (x_TF, valid_T) in enumerate(videos):
      padded = _round_up(len(x_TF), self.factor)
      valid_S = np.concatenate([np.asarray(valid_T, bool), np.zeros(padded - len(x_TF), bool)])
      z_SD = np.concatenate([z for _, z in sorted(pieces[v], key=lambda p: p[0])])
      results.append((z_SD, valid_S.reshape(-1, self.factor).any(-1)))
    return results

  def encode_latents(self, x_TF, valid_T=None, chunk_frames=4096):
    """Continuous latents [S, D] and step validity [S] of one normalised video."""
    valid_T = np.ones(len(x_TF), bool) if valid_T is None else np.asarray(valid_T, bool)
    return self.encode_latents_many([(np.asarray(x_TF, _F32), valid_T)], chunk_frames)[0]

  # --- quantizer ------------------------------------------------------------------------------

  def _codebook(self, level):
    return self.codebooks_CKE[0 if len(self.codebooks_CKE) == 1 else level]

  def quantize(self, z_SD, block_rows=32768):
    """Residual codes [S, L] of latents, nearest by squared distance, ties to the lowest index
    (rows in blocks, so the distance matrix stays small)."""
    if not self.has_codes:
      raise ValueError("this model has no codebook (quantizer.kind='none')")
    z_SD = np.asarray(z_SD, _F32)
    if self.lookup_dim:
      z_SD = z_SD @ self.params["quantizer/project_in/kernel"] + self.params[
          "quantizer/project_in/bias"]
    codes = np.empty((len(z_SD), self.num_levels), np.int32)
    for begin in range(0, len(z_SD), block_rows):
      residual = z_SD[begin:begin + block_rows]
      for level in range(self.num_levels):
        codebook = self._codebook(level)
        a, c = residual, codebook
        if self.cosine:
          a, c = _l2_normalize(a), _l2_normalize(c)
        d_SK = (np.sum(a * a, axis=-1, keepdims=True) - 2.0 * (a @ c.T)
                + np.sum(c * c, axis=-1)[None, :])
        idx = np.argmin(d_SK, axis=-1)
        codes[begin:begin + len(residual), level] = idx
        residual = residual - codebook[idx]
    return codes

  def encode_many(self, videos, chunk_frames=4096, batch_frames=32768):
    """Tokens of several normalised videos [(x [T, F], valid [T])], batched: a list of dicts
    with codes [S, L] (-1 on steps without a valid frame), latents [S, D] and valid [S]."""
    latents = self.encode_latents_many(
        [(np.asarray(x, _F32), np.ones(len(x), bool) if v is None else np.asarray(v, bool))
         for x, v in videos], chunk_frames, batch_frames)
    all_z = np.concatenate([z for z, _ in latents])
    all_codes = (self.quantize(all_z) if self.has_codes
                 else np.zeros((len(all_z), 0), np.int32))
    out, row = [], 0
    for z_SD, valid_S in latents:
      codes = all_codes[row:row + len(z_SD)]
      row += len(z_SD)
      out.append({"codes": np.where(valid_S[:, None], codes, -1).astype(np.int32),
                  "latents": z_SD, "valid": valid_S})
    return out

  def encode(self, x_TF, valid_T=None, normalized=False, subject_mean=None, chunk_frames=4096):
    """Tokens of one video: codes [S, L] (-1 on steps without a valid frame), latents, valid."""
    valid_T = np.ones(len(x_TF), bool) if valid_T is None else np.asarray(valid_T, bool)
    x = x_TF if normalized else self.normalize(x_TF, valid_T, subject_mean)
    return self.encode_many([(x, valid_T)], chunk_frames)[0]

  # --- decoder --------------------------------------------------------------------------------

  def codes_to_latents(self, codes_SL):
    """Sum of the code vectors of each step [S, D]; -1 (a skipped level) adds nothing."""
    codes_SL = np.asarray(codes_SL)
    total = np.zeros((len(codes_SL), self.codebooks_CKE.shape[-1]), _F32)
    for level in range(codes_SL.shape[1]):
      idx = codes_SL[:, level]
      total += np.where((idx >= 0)[:, None], self._codebook(level)[np.maximum(idx, 0)], 0.0)
    if self.lookup_dim:
      total = total @ self.params["quantizer/project_out/kernel"] + self.params[
          "quantizer/project_out/bias"]
    return total

  def decode_latents(self, z_SD, num_frames=None, denormalized=True, subject_mean=None):
    """Expression vectors [T, F] from latents [S, D] (the whole sequence at once)."""
    x_TF = _run(self.decoder_layers, np.asarray(z_SD, _F32)[None],
                lambda layer, h: self._conv(h, "decoder", layer))[0, :num_frames]
    if not denormalized:
      return x_TF
    offset = self.norm_mean if subject_mean is None else np.asarray(subject_mean, _F32)
    return x_TF * self.norm_std + offset

  def decode(self, codes_SL, num_frames=None, denormalized=True, subject_mean=None):
    """Expression vectors [T, F] from codes [S, L]; in feature units when `denormalized`
    (subject-centred in `subject` mode unless `subject_mean` is given)."""
    return self.decode_latents(self.codes_to_latents(codes_SL), num_frames, denormalized,
                               subject_mean)
