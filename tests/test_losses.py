"""The training loss: masking, velocity pairs, per-group breakdown and weighting."""

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from dfe_jax.formats import feature_spaces
from dfe_jax.training import losses


def _loss_config(**weights):
  config = ml_collections.ConfigDict(dict(recon_weight=1.0, velocity_weight=0.5,
                                          commit_weight=0.02, codebook_weight=1.0,
                                          ortho_weight=0.0, sparsity_weight=0.0))
  config.update(weights)
  return config


def _aux(commit=0.0, codebook=0.0, ortho=0.0, sparsity=0.0):
  f = lambda v: jnp.asarray(v, jnp.float32)
  return {"commit_loss": f(commit), "codebook_loss": f(codebook), "ortho_loss": f(ortho),
          "sparsity_loss": f(sparsity), "codes": jnp.zeros((2, 3, 4), jnp.int32),
          "vq/level0/perplexity": f(7.0), "vq/counts_LK": jnp.ones((4, 8), jnp.int32)}


def test_reconstruction_mse_counts_only_valid_frames():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 6, 5)).astype(np.float32)
  recon = x + rng.normal(size=x.shape).astype(np.float32)
  mask = np.ones((2, 6), bool)
  mask[1, 4:] = False
  recon[1, 4:] = 1e6  # Garbage on padding must not matter.
  want = np.mean(((recon - x) ** 2)[mask])
  assert float(losses.masked_mse(recon, x, mask)) == pytest.approx(want, rel=1e-5)


def test_velocity_loss_uses_only_pairs_of_valid_frames():
  x = np.zeros((1, 5, 2), np.float32)
  recon = np.zeros_like(x)
  recon[0, 1] = 1.0  # Differences (0->1) and (1->2) are wrong by 1 in each feature.
  recon[0, 4] = 50.0  # Frame 4 is invalid: its pair (3->4) must not count.
  mask = np.array([[True, True, True, True, False]])
  # Valid pairs: (0,1), (1,2), (2,3); squared errors per pair: 1, 1, 0.
  assert float(losses.velocity_mse(recon, x, mask)) == pytest.approx(2.0 / 3.0, rel=1e-6)


def test_group_breakdown_follows_feature_names():
  names = feature_spaces.FLAME53
  x = np.zeros((1, 4, 53), np.float32)
  recon = x.copy()
  recon[..., 50:] = 2.0  # Only the jaw is wrong.
  groups = losses.group_mse(recon, x, np.ones((1, 4), bool), names)
  assert set(groups) == {"recon/group/exp_mse", "recon/group/jaw_mse"}
  assert float(groups["recon/group/exp_mse"]) == 0.0
  assert float(groups["recon/group/jaw_mse"]) == pytest.approx(4.0)
  arkit = losses.group_mse(np.zeros((1, 2, 51)), np.zeros((1, 2, 51)), np.ones((1, 2), bool),
                           feature_spaces.ARKIT51)
  assert {"recon/group/mouth_mse", "recon/group/brow_mse", "recon/group/jaw_mse"} <= set(arkit)


def test_total_loss_is_the_weighted_sum_and_reports_every_term():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(2, 6, 53)).astype(np.float32)
  recon = x + 0.1 * rng.normal(size=x.shape).astype(np.float32)
  mask = np.ones((2, 6), bool)
  aux = _aux(commit=3.0, codebook=5.0, ortho=0.7, sparsity=11.0)
  config = _loss_config(ortho_weight=0.1, codebook_weight=0.0)
  loss, metrics = losses.total_loss(recon, x, mask, aux, config, feature_spaces.FLAME53)
  want = (float(losses.masked_mse(recon, x, mask))
          + 0.5 * float(losses.velocity_mse(recon, x, mask)) + 0.02 * 3.0 + 0.1 * 0.7)
  assert float(loss) == pytest.approx(want, rel=1e-5)
  assert float(metrics["loss/total"]) == pytest.approx(want, rel=1e-5)
  # Zero-weight terms are reported but not added.
  assert float(metrics["loss/codebook"]) == 5.0 and float(metrics["loss/sparsity"]) == 11.0
  assert "recon/group/jaw_mse" in metrics
  # Scalar aux metrics pass through; arrays (codes, counts) do not.
  assert float(metrics["vq/level0/perplexity"]) == 7.0
  assert "vq/counts_LK" not in metrics and "codes" not in metrics
