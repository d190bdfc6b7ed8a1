"""Thin Linen modules around `quantizer.py`: the residual VQ and the continuous (`none`) bottleneck.

The codebook of an EMA quantizer lives in the `vq_stats` collection with its EMA counts and sums
and an `initialised` flag; a gradient-learned codebook is the parameter `codebook` and `vq_stats`
then only tracks usage. In train mode the module updates `vq_stats` (pass `mutable=["vq_stats"]`
and `rngs={"vq": key}` with one key for the whole global batch).

Shape legend: B batch, T latent steps, N = B*T, L levels, C codebooks (1 if shared, else L),
K codes per codebook, D code_dim (encoder output), E lookup dimension (D unless `lookup_dim`).
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfe_jax.models import quantizer as vq

_F32 = jnp.float32


def _masked_level_mse(a_NLE, b_NLE, w_NL):
  """Per-level mean squared error [L] over rows with weight > 0 (mean over the vector too)."""
  se_NL = jnp.mean((a_NLE - b_NLE) ** 2, axis=-1)
  return jnp.sum(se_NL * w_NL, axis=0) / jnp.maximum(jnp.sum(w_NL, axis=0), 1.0)


class ResidualVQ(nn.Module):
  """Residual vector quantizer with a shared or per-level codebook, EMA or gradient learned."""
  num_levels: int = 6
  codebook_size: int = 512
  code_dim: int = 128
  shared_codebook: bool = True
  lookup_dim: int = 0  # > 0: quantize in a projected space of this size (factorised lookup).
  cosine: bool = False  # Assign by cosine similarity; code values stay raw (DAC style).
  learning: str = "ema"  # "ema" or "gradient".
  ema_decay: float = 0.99
  ema_eps: float = 1e-5
  dead_code_threshold: float = 2.0  # EMA count below which a code is dead (0 disables restart).
  dead_code_reset_count: float = 4.0  # EMA count given to a revived code.
  kmeans_iters: int = 10
  dropout_prob: float = 0.0  # Probability of quantizer dropout in train mode.
  dropout_per_example: bool = False
  ortho_active_only: bool = False

  def setup(self):
    if self.learning not in ("ema", "gradient"):
      raise ValueError(f"quantizer.learning must be 'ema' or 'gradient', got {self.learning!r}")
    num_books = 1 if self.shared_codebook else self.num_levels
    dim = self.lookup_dim or self.code_dim
    shape = (num_books, self.codebook_size, dim)
    if self.lookup_dim:
      self.project_in = nn.Dense(self.lookup_dim, dtype=_F32, name="project_in")
      self.project_out = nn.Dense(self.code_dim, dtype=_F32, name="project_out")
    init = lambda: jax.random.normal(self.make_rng("params"), shape, _F32)
    if self.learning == "ema":
      self.codebook = self.variable("vq_stats", "codebook", init)
      self.ema_sum = self.variable("vq_stats", "ema_sum", lambda: self.codebook.value)
    else:
      self.codebook_param = self.param("codebook", lambda rng: jax.random.normal(rng, shape, _F32))
    # Laplace-style start: every code begins with count 1, so nothing divides by ~0.
    self.ema_count = self.variable("vq_stats", "ema_count", jnp.ones, shape[:2], _F32)
    self.initialised = self.variable("vq_stats", "initialised", lambda: jnp.array(False))

  @property
  def num_codebooks(self):
    """1 for a shared codebook, else one per level."""
    return 1 if self.shared_codebook else self.num_levels

  def codebooks(self):
    """The current codebooks [C, K, E] in float32."""
    if self.learning == "ema":
      return self.codebook.value
    return self.codebook_param.astype(_F32)

  def _to_lookup(self, z_NE):
    return self.project_in(z_NE) if self.lookup_dim else z_NE

  def _from_lookup(self, q_NE):
    return self.project_out(q_NE) if self.lookup_dim else q_NE

  def __call__(self, z_BTD, mask_BT, train=False):
    """Quantizes z [B, T, D]; returns (z_q [B, T, D] float32, aux dict)."""
    batch, steps, _ = z_BTD.shape
    num_levels, num_codes = self.num_levels, self.codebook_size
    weight_N = mask_BT.reshape(-1).astype(_F32)
    e_NE = self._to_lookup(z_BTD.reshape(batch * steps, -1).astype(_F32))
    num_active_N = None
    if train and self.dropout_prob > 0:
      num_active_B = vq.sample_num_active_levels(
          jax.random.fold_in(self.make_rng("vq"), 1), batch, num_levels, self.dropout_prob,
          self.dropout_per_example)
      num_active_N = jnp.repeat(num_active_B, steps)
    codebooks_CKE = self.codebooks()
    codes_NL, residuals_NLE, quantized_NLE = vq.residual_quantize(
        e_NE, codebooks_CKE, num_levels, num_active_N, self.cosine)
    q_NE = jnp.sum(jax.lax.stop_gradient(quantized_NLE), axis=1)
    # One straight-through estimator on the sum: the decoder's gradient reaches z unchanged.
    eq_NE = e_NE + jax.lax.stop_gradient(q_NE - e_NE)
    zq_BTD = self._from_lookup(eq_NE).reshape(batch, steps, -1)

    w_NL = vq.level_weights(codes_NL, weight_N)
    commit_L = _masked_level_mse(residuals_NLE, jax.lax.stop_gradient(quantized_NLE), w_NL)
    if self.learning == "gradient":
      codebook_loss = jnp.sum(_masked_level_mse(jax.lax.stop_gradient(residuals_NLE),
                                                quantized_NLE, w_NL))
    else:
      codebook_loss = jnp.zeros((), _F32)
    counts_LK = vq.code_counts(codes_NL, weight_N, num_codes)
    counts_CK = counts_LK.sum(0, keepdims=True) if self.shared_codebook else counts_LK
    ortho_loss = vq.orthogonality_loss(
        codebooks_CKE, (counts_CK > 0) if self.ortho_active_only else None)
    sparsity_loss = (jnp.sum(jnp.mean(jnp.abs(e_NE), axis=-1) * weight_N)
                     / jnp.maximum(jnp.sum(weight_N), 1.0))

    ema_count_CK = self.ema_count.value
    if train and not self.is_initializing():
      ema_count_CK = self._update_stats(residuals_NLE, codes_NL, weight_N, counts_CK)

    aux = {
        "codes": codes_NL.reshape(batch, steps, num_levels),
        "commit_loss": jnp.sum(commit_L),
        "codebook_loss": codebook_loss,
        "ortho_loss": ortho_loss,
        "sparsity_loss": sparsity_loss,
        "vq/counts_LK": counts_LK.astype(jnp.int32),
        "vq/active_levels": jnp.sum(w_NL) / jnp.maximum(jnp.sum(weight_N), 1.0),
    }
    aux.update(vq.usage_metrics_from_counts(counts_LK))
    dead_frac_C = jnp.mean((ema_count_CK < self.dead_code_threshold).astype(_F32), axis=-1)
    for level in range(num_levels):
      aux[f"vq/level{level}/commit"] = commit_L[level]
      aux[f"vq/level{level}/dead_frac"] = dead_frac_C[vq.codebook_index(level,
                                                                        self.num_codebooks)]
    return zq_BTD, aux

  def _update_stats(self, residuals_NLE, codes_NL, weight_N, counts_CK):
    """EMA step plus dead-code restart; returns the EMA counts that decided deadness."""
    residuals_NLE = jax.lax.stop_gradient(residuals_NLE)
    if self.learning == "gradient":
      # The optimizer owns the codebook; only usage is tracked (for dead_frac).
      count_CK = (self.ema_decay * self.ema_count.value
                  + (1.0 - self.ema_decay) * counts_CK)
      self.ema_count.value = count_CK
      return count_CK
    _, sums_CKE = vq.batch_statistics(residuals_NLE, codes_NL, weight_N, self.num_codebooks,
                                      self.codebook_size)
    codebook_CKE, count_CK, sum_CKE = vq.ema_update(
        self.ema_count.value, self.ema_sum.value, counts_CK, sums_CKE, self.ema_decay,
        self.ema_eps)
    dead_count_CK = count_CK
    if self.dead_code_threshold > 0:
      candidates_CME, cand_weight_CM = vq.restart_candidates(residuals_NLE, codes_NL, weight_N,
                                                             self.num_codebooks)
      codebook_CKE, count_CK, sum_CKE, _ = vq.restart_dead_codes(
          jax.random.fold_in(self.make_rng("vq"), 2), codebook_CKE, count_CK, sum_CKE,
          candidates_CME, cand_weight_CM, self.dead_code_threshold, self.dead_code_reset_count)
    self.codebook.value = codebook_CKE
    self.ema_count.value = count_CK
    self.ema_sum.value = sum_CKE
    return dead_count_CK

  def decode(self, codes_BTL):
    """Latents [B, T, D] from integer codes [B, T, L]; -1 skips a level."""
    batch, steps, num_levels = codes_BTL.shape
    q_NLE = vq.lookup_codes(codes_BTL.reshape(batch * steps, num_levels), self.codebooks())
    return self._from_lookup(jnp.sum(q_NLE, axis=1)).reshape(batch, steps, -1)

  def kmeans_init(self, z_BTD, mask_BT):
    """Fits the codebooks to this batch by residual k-means and sets `initialised`.

    Writes `vq_stats` (and `params/codebook` when gradient-learned), so call it with those
    collections mutable and `rngs={"vq": key}`. Pure and jittable; the batch may be sharded.
    """
    e_NE = self._to_lookup(z_BTD.reshape(-1, z_BTD.shape[-1]).astype(_F32))
    codebooks_CKE, counts_CK = vq.kmeans_codebooks(
        self.make_rng("vq"), jax.lax.stop_gradient(e_NE), mask_BT.reshape(-1).astype(_F32),
        self.num_codebooks, self.codebook_size, self.num_levels, self.kmeans_iters, self.cosine)
    if self.learning == "ema":
      self.codebook.value = codebooks_CKE
      self.ema_sum.value = codebooks_CKE * counts_CK[..., None]
    else:
      self.put_variable("params", "codebook", codebooks_CKE)
    self.ema_count.value = counts_CK
    self.initialised.value = jnp.array(True)


class Continuous(nn.Module):
  """The `none` quantizer: the latent passes through unchanged (the no-discretisation baseline)."""
  code_dim: int = 128

  def setup(self):
    self.initialised = self.variable("vq_stats", "initialised", lambda: jnp.array(True))

  def __call__(self, z_BTD, mask_BT, train=False):
    """Returns (z [B, T, D] float32, aux) with empty codes [B, T, 0] and zero VQ losses."""
    del train
    batch, steps, _ = z_BTD.shape
    z_BTD = z_BTD.astype(_F32)
    w_BT = mask_BT.astype(_F32)
    zero = jnp.zeros((), _F32)
    sparsity = jnp.sum(jnp.mean(jnp.abs(z_BTD), -1) * w_BT) / jnp.maximum(jnp.sum(w_BT), 1.0)
    aux = {"codes": jnp.zeros((batch, steps, 0), jnp.int32), "commit_loss": zero,
           "codebook_loss": zero, "ortho_loss": zero, "sparsity_loss": sparsity}
    return z_BTD, aux

  def decode(self, codes_BTL):
    """Not defined: a continuous latent has no codes."""
    raise ValueError("the 'none' quantizer has no codes to decode; use the latents instead")

  def kmeans_init(self, z_BTD, mask_BT):
    """Nothing to fit; keeps the `initialised` flag True."""
    del z_BTD, mask_BT
    self.initialised.value = jnp.array(True)
