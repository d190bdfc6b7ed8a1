"""Residual vector quantization maths: lookup, EMA codebook, k-means init, dead-code restart.

Pure functions only; `residual_vq.py` holds the thin Linen module around them. Everything runs in
float32 whatever the caller's dtype, and every statistic is weighted by a validity weight so padded
or invalid frames never move a codebook.

The maths, for a latent z and codebooks (one shared, or one per level):

  r_1 = z;   k_l = argmin_k ||r_l - c_k||^2;   q_l = c_{k_l};   r_{l+1} = r_l - sg(q_l)
  z_q = z + sg(sum_l q_l - z)                                   (one straight-through estimator)
  commit_l = mean ||r_l - sg(q_l)||^2,   codebook_l = mean ||sg(r_l) - q_l||^2

The next residual uses the *detached* q_l (encodec#25): r_{l+1} then still depends on z, so every
level's commitment term pulls the encoder. EMA (Laplace-smoothed, counts start at 1):

  n_k <- d n_k + (1-d) count_k;   s_k <- d s_k + (1-d) sum_k;   c_k = s_k / smooth(n)_k

Shape legend: N flattened latents (batch x time), L levels, C codebooks (1 if shared, else L),
K codes per codebook, E lookup dimension (the space the codes live in), M restart candidates.
"""

import jax
import jax.numpy as jnp
import numpy as np

_F32 = jnp.float32


def l2_normalize(x, axis=-1, eps=1e-6):
  """Scales vectors to unit L2 norm (eps keeps zero vectors finite)."""
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=axis, keepdims=True), eps * eps))


def distance_keys(x_NE, codebook_KE):
  """||c||^2 - 2 x.c [N, K] in float32: the squared L2 distance minus ||x||^2.

  The dropped term is the same for every code of a row, so the row's order (and argmin) is
  that of the distances; skipping it saves a pass over the [N, K] matrix.
  """
  x_NE = x_NE.astype(_F32)
  codebook_KE = codebook_KE.astype(_F32)
  xc_NK = jnp.dot(x_NE, codebook_KE.T, precision=jax.lax.Precision.HIGHEST)
  return jnp.sum(codebook_KE * codebook_KE, axis=-1)[None, :] - 2.0 * xc_NK


def nearest_code(x_NE, codebook_KE, cosine=False):
  """Index [N] of the nearest code; by cosine similarity when `cosine` (values stay raw codes)."""
  if cosine:
    x_NE, codebook_KE = l2_normalize(x_NE.astype(_F32)), l2_normalize(codebook_KE.astype(_F32))
  d_NK = distance_keys(x_NE, codebook_KE)
  # The float argmin (first index on ties) taken over int32 keys: non-negative floats order like
  # their bit patterns and the xor puts negative ones below them in the same order (-0.0 is made
  # +0.0 first). XLA:CPU runs this several times faster than a float argmin, which also tracks
  # NaNs; a NaN row still gets an in-range code.
  bits_NK = jax.lax.bitcast_convert_type(jnp.where(d_NK == 0.0, 0.0, d_NK), jnp.int32)
  return jnp.argmin(bits_NK ^ ((bits_NK >> 31) & 0x7FFFFFFF), axis=-1).astype(jnp.int32)


def codebook_index(level, num_codebooks):
  """Which codebook level `level` reads: 0 when shared, else its own."""
  return 0 if num_codebooks == 1 else level


def residual_quantize(z_NE, codebooks_CKE, num_levels, num_active_N=None, cosine=False):
  """Greedy residual quantization of z over `num_levels` levels.

  Levels at or beyond a row's `num_active_N` (quantizer dropout) get code -1 and a zero vector.
  Returns codes_NL int32, residuals_NLE (each level's input) and quantized_NLE (each level's code
  vector, differentiable w.r.t. the codebook for gradient-learned codebooks).
  """
  num_codebooks = codebooks_CKE.shape[0]
  residual_NE = z_NE.astype(_F32)
  codes, residuals, quantized = [], [], []
  for level in range(num_levels):
    codebook_KE = codebooks_CKE[codebook_index(level, num_codebooks)].astype(_F32)
    idx_N = nearest_code(jax.lax.stop_gradient(residual_NE), jax.lax.stop_gradient(codebook_KE),
                         cosine)
    q_NE = jnp.take(codebook_KE, idx_N, axis=0)
    if num_active_N is not None:
      active_N = level < num_active_N
      q_NE = jnp.where(active_N[:, None], q_NE, 0.0)
      idx_N = jnp.where(active_N, idx_N, -1)
    codes.append(idx_N)
    residuals.append(residual_NE)
    quantized.append(q_NE)
    # Detached on purpose: the straight-through output here would zero later levels' gradients.
    residual_NE = residual_NE - jax.lax.stop_gradient(q_NE)
  return jnp.stack(codes, 1), jnp.stack(residuals, 1), jnp.stack(quantized, 1)


def lookup_codes(codes_NL, codebooks_CKE):
  """Code vectors [N, L, E] for integer codes; -1 (skipped level) gives a zero vector."""
  num_codebooks = codebooks_CKE.shape[0]
  out = []
  for level in range(codes_NL.shape[1]):
    codebook_KE = codebooks_CKE[codebook_index(level, num_codebooks)].astype(_F32)
    idx_N = codes_NL[:, level]
    q_NE = jnp.take(codebook_KE, jnp.maximum(idx_N, 0), axis=0)
    out.append(jnp.where((idx_N >= 0)[:, None], q_NE, 0.0))
  return jnp.stack(out, 1)


def sample_num_active_levels(key, batch_size, num_levels, prob, per_example):
  """Quantizer dropout: with probability `prob` keep n ~ U{1..L} levels, else all L; int32 [B].

  `per_example` draws one cutoff per example (DAC), otherwise one per batch (MoMask, SoundStream).
  The upper bound is inclusive so every cutoff, keeping all levels included, can be drawn.
  """
  drop_key, level_key = jax.random.split(key)
  shape = (batch_size,) if per_example else ()
  drop = jax.random.bernoulli(drop_key, prob, shape)
  n = jax.random.randint(level_key, shape, 1, num_levels + 1)
  return jnp.broadcast_to(jnp.where(drop, n, num_levels), (batch_size,)).astype(jnp.int32)


def level_weights(codes_NL, weight_N):
  """Weight [N, L] of each (row, level) pair: valid row and level not skipped."""
  return weight_N.astype(_F32)[:, None] * (codes_NL >= 0).astype(_F32)


def code_counts(codes_NL, weight_N, codebook_size):
  """Weighted per-level code histograms [L, K] (invalid rows and skipped levels excluded)."""
  num_levels = codes_NL.shape[1]
  w_NL = level_weights(codes_NL, weight_N)
  seg_NL = jnp.maximum(codes_NL, 0) + codebook_size * jnp.arange(num_levels)[None, :]
  counts = jax.ops.segment_sum(w_NL.reshape(-1), seg_NL.reshape(-1),
                               num_segments=num_levels * codebook_size)
  return counts.reshape(num_levels, codebook_size)


def batch_statistics(residuals_NLE, codes_NL, weight_N, num_codebooks, codebook_size):
  """This batch's per-codebook assignment counts [C, K] and residual sums [C, K, E]."""
  num_levels = codes_NL.shape[1]
  dim = residuals_NLE.shape[-1]
  counts_LK = code_counts(codes_NL, weight_N, codebook_size)
  w_NL = level_weights(codes_NL, weight_N)
  book_L = jnp.array([codebook_index(l, num_codebooks) for l in range(num_levels)])
  seg_NL = jnp.maximum(codes_NL, 0) + codebook_size * book_L[None, :]
  sums = jax.ops.segment_sum((residuals_NLE.astype(_F32) * w_NL[..., None]).reshape(-1, dim),
                             seg_NL.reshape(-1), num_segments=num_codebooks * codebook_size)
  if num_codebooks == 1:
    counts_CK = jnp.sum(counts_LK, axis=0, keepdims=True)
  else:
    counts_CK = counts_LK
  return counts_CK, sums.reshape(num_codebooks, codebook_size, dim)


def ema_update(ema_count_CK, ema_sum_CKE, counts_CK, sums_CKE, decay, eps):
  """One EMA step; returns (codebook, ema_count, ema_sum) with Laplace-smoothed normalisation."""
  ema_count_CK = decay * ema_count_CK + (1.0 - decay) * counts_CK
  ema_sum_CKE = decay * ema_sum_CKE + (1.0 - decay) * sums_CKE
  total_C1 = jnp.sum(ema_count_CK, axis=-1, keepdims=True)
  num_codes = ema_count_CK.shape[-1]
  # Smoothing keeps a never-used code's divisor away from 0 without changing the total mass.
  smoothed_CK = (ema_count_CK + eps) / (total_C1 + num_codes * eps) * total_C1
  return ema_sum_CKE / smoothed_CK[..., None], ema_count_CK, ema_sum_CKE


def sample_rows(key, candidates_ME, weight_M, num_samples):
  """Draws `num_samples` rows uniformly among rows with weight > 0 (row 0 if there are none)."""
  cdf_M = jnp.cumsum((weight_M > 0).astype(jnp.int32), axis=0)
  u = jax.random.randint(key, (num_samples,), 0, jnp.maximum(cdf_M[-1], 1))
  # The first row whose running count exceeds u is the (u+1)-th valid row: no N x K sampling.
  idx = jnp.searchsorted(cdf_M, u, side="right")
  return jnp.take(candidates_ME, jnp.minimum(idx, cdf_M.shape[0] - 1), axis=0)


def restart_candidates(residuals_NLE, codes_NL, weight_N, num_codebooks):
  """Vectors [C, M, E] and weights [C, M] that may replace each codebook's dead codes."""
  w_NL = level_weights(codes_NL, weight_N)
  if num_codebooks == 1:
    dim = residuals_NLE.shape[-1]
    return residuals_NLE.reshape(1, -1, dim), w_NL.reshape(1, -1)
  return jnp.swapaxes(residuals_NLE, 0, 1), w_NL.T


def restart_dead_codes(key, codebook_CKE, ema_count_CK, ema_sum_CKE, candidates_CME, weight_CM,
                       threshold, reset_count):
  """Replaces codes with EMA count < threshold by batch vectors, resetting their statistics.

  The key must be the same on every device (it is, inside one jit). The replaced codes get count
  `reset_count` and sum code * count, so the next EMA step keeps the new vector instead of
  pulling it back to the stale sum (espnet#6284). Returns (codebook, ema_count, ema_sum, dead_CK).
  """
  num_codebooks, num_codes = ema_count_CK.shape
  keys = jax.random.split(key, num_codebooks)
  new_CKE = jax.vmap(sample_rows, in_axes=(0, 0, 0, None))(
      keys, candidates_CME.astype(_F32), weight_CM, num_codes)
  dead_CK = ema_count_CK < threshold
  replace_CK = dead_CK & (jnp.sum(weight_CM, axis=-1) > 0)[:, None]
  codebook_CKE = jnp.where(replace_CK[..., None], new_CKE, codebook_CKE)
  ema_count_CK = jnp.where(replace_CK, reset_count, ema_count_CK)
  ema_sum_CKE = jnp.where(replace_CK[..., None], new_CKE * reset_count, ema_sum_CKE)
  return codebook_CKE, ema_count_CK, ema_sum_CKE, dead_CK


def kmeans_codebooks(key, z_NE, weight_N, num_codebooks, codebook_size, num_levels, iters,
                     cosine=False):
  """Fits codebooks [C, K, E] to z by residual Lloyd iterations; also returns counts [C, K].

  Each iteration residual-quantizes z through all levels and moves every code to the mean of the
  residuals assigned to it, the fixed point the EMA update drifts to. Codes left empty are reseeded
  from that iteration's residuals, so a shared codebook ends up with codes at every level's scale.
  """
  z_NE = z_NE.astype(_F32)
  init_keys = jax.random.split(jax.random.fold_in(key, 0), num_codebooks)
  codebooks = jax.vmap(sample_rows, in_axes=(0, None, None, None))(
      init_keys, z_NE, weight_N, codebook_size)

  def assign(codebooks_CKE):
    codes_NL, residuals_NLE, _ = residual_quantize(z_NE, codebooks_CKE, num_levels, cosine=cosine)
    counts_CK, sums_CKE = batch_statistics(residuals_NLE, codes_NL, weight_N, num_codebooks,
                                           codebook_size)
    return codes_NL, residuals_NLE, counts_CK, sums_CKE

  def step(i, codebooks_CKE):
    codes_NL, residuals_NLE, counts_CK, sums_CKE = assign(codebooks_CKE)
    means_CKE = sums_CKE / jnp.maximum(counts_CK, 1.0)[..., None]
    candidates_CME, cand_weight_CM = restart_candidates(residuals_NLE, codes_NL, weight_N,
                                                        num_codebooks)
    keys = jax.random.split(jax.random.fold_in(key, i + 1), num_codebooks)
    reseed_CKE = jax.vmap(sample_rows, in_axes=(0, 0, 0, None))(
        keys, candidates_CME, cand_weight_CM, codebook_size)
    return jnp.where((counts_CK > 0)[..., None], means_CKE, reseed_CKE)

  codebooks = jax.lax.fori_loop(0, iters, step, codebooks)
  _, _, counts_CK, _ = assign(codebooks)
  return codebooks, counts_CK


def orthogonality_loss(codebooks_CKE, active_CK=None):
  """Mean squared cosine similarity between distinct codes (0 when mutually orthogonal).

  With `active_CK` only pairs of codes used in the batch count (the paper's ablation option).
  """
  normed_CKE = l2_normalize(codebooks_CKE.astype(_F32))
  sim_CKK = jnp.einsum("cke,cje->ckj", normed_CKE, normed_CKE,
                       precision=jax.lax.Precision.HIGHEST)
  num_codes = codebooks_CKE.shape[1]
  pair_CKK = jnp.broadcast_to(1.0 - jnp.eye(num_codes, dtype=_F32), sim_CKK.shape)
  if active_CK is not None:
    a_CK = active_CK.astype(_F32)
    pair_CKK = pair_CKK * a_CK[:, :, None] * a_CK[:, None, :]
  return jnp.sum(pair_CKK * sim_CKK ** 2) / jnp.maximum(jnp.sum(pair_CKK), 1.0)


def usage_metrics_from_counts(counts_LK, prefix="vq"):
  """Perplexity, usage fraction and entropy efficiency per level from code counts [L, K].

  Works on one batch's counts or on counts summed over a whole split (the honest usage number:
  per-batch histograms understate it). Accepts NumPy or JAX arrays; returns a flat dict.
  """
  xp = jnp if isinstance(counts_LK, jax.Array) else np
  counts_LK = xp.asarray(counts_LK, dtype=np.float32)
  total_L1 = xp.maximum(xp.sum(counts_LK, axis=-1, keepdims=True), 1e-9)
  p_LK = counts_LK / total_L1
  entropy_L = -xp.sum(xp.where(p_LK > 0, p_LK * xp.log(xp.maximum(p_LK, 1e-30)), 0.0), axis=-1)
  perplexity_L = xp.exp(entropy_L)
  usage_L = xp.mean((counts_LK > 0).astype(np.float32), axis=-1)
  efficiency_L = entropy_L / np.log(counts_LK.shape[-1])
  metrics = {}
  for level in range(counts_LK.shape[0]):
    metrics[f"{prefix}/level{level}/perplexity"] = perplexity_L[level]
    metrics[f"{prefix}/level{level}/usage"] = usage_L[level]
    metrics[f"{prefix}/level{level}/efficiency"] = efficiency_L[level]
  return metrics
