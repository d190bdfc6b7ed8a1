"""What each code does: the decoder's answer to "this code alone", for the report and the
display-discovery measures.

A code's effect is the decoding of a constant latent sequence with the code at one level and
every other level skipped (-1), minus the decoding of an all-skipped sequence, read at the centre
frame (away from the conv decoder's edge effects). With a shared codebook the quantizer sums the
same code vector whatever the level, so one effect per code serves every level; separate
codebooks give one effect per (level, code). Effects are in the model's normalised units; times
the training std (`feature_std`) they are in the input's own units (the mean cancels in the
difference).

Legend: K codes, L levels, S latent steps, T frames, D features.
"""

import jax
import jax.numpy as jnp
import numpy as np

_EFFECT_STEPS = 16  # Latent steps of the constant sequence; wider than the decoder's reach.


def decoder(trained):
  """A jitted `decode_codes(variables, codes)` for this model, built once per model."""
  if not hasattr(trained, "_report_decode"):
    trained._report_decode = jax.jit(  # pylint: disable=protected-access
        lambda v, c: trained.model.apply(v, c, method=trained.model.decode_codes))
  return trained._report_decode  # pylint: disable=protected-access


def feature_std(info):
  """The training std per feature, the scale from normalised to input units."""
  return np.asarray(info["normalization"]["std"], np.float32)


def token_effects(trained):
  """Effects [Le, K, D] in normalised units: Le = 1 for a shared codebook, else one per level."""
  q = trained.config.model.quantizer
  num_levels, codebook_size = q.num_levels, q.codebook_size
  levels = 1 if q.shared_codebook else num_levels
  codes_KSL = np.full((codebook_size, _EFFECT_STEPS, num_levels), -1, np.int32)
  skipped_1SL = codes_KSL[:1].copy()
  decode = decoder(trained)
  base_D = np.asarray(decode(trained.variables, jnp.asarray(skipped_1SL)))[0]
  centre = base_D.shape[0] // 2
  effects = []
  for level in range(levels):
    codes = codes_KSL.copy()
    codes[:, :, level] = np.arange(codebook_size)[:, None]
    out_KTD = np.asarray(decode(trained.variables, jnp.asarray(codes)))
    effects.append(out_KTD[:, centre] - base_D[centre])
  return np.stack(effects)


def non_additivity(trained, codes_NL, *, num_windows=64, window_steps=16, seed=0):
  """How far the decoder is from adding its levels' effects, on real token sequences.

  For windows of consecutive code rows c (rows of `codes_NL`, in corpus order), the relative
  error || d(c) - d(none) - sum_l (d(c_l) - d(none)) || / || d(c) - d(none) ||, where d decodes,
  c_l keeps level l only and `none` skips every level: 0 for a decoder additive in the tokens
  (`models/additive_decoder.py`), larger the more a token's effect depends on its company.
  """
  codes_NL = np.asarray(codes_NL, np.int32)
  starts = np.random.default_rng(seed).integers(0, max(len(codes_NL) - window_steps, 1),
                                                num_windows)
  codes_BSL = np.stack([codes_NL[s:s + window_steps] for s in starts])
  decode = decoder(trained)
  run = lambda c: np.asarray(decode(trained.variables, jnp.asarray(c)), np.float64)
  none = run(np.full_like(codes_BSL, -1))
  full = run(codes_BSL) - none
  levels = np.arange(codes_BSL.shape[-1])
  parts = sum(run(np.where(levels == l, codes_BSL, -1)) - none for l in levels)
  return float(np.linalg.norm(full - parts) / max(np.linalg.norm(full), 1e-12))
