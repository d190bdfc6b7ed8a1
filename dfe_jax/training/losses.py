"""RVQ-VAE training loss: masked reconstruction, velocity, VQ terms and a per-group breakdown.

All weights come from `config.loss` (recon_weight, velocity_weight, commit_weight,
codebook_weight, ortho_weight, sparsity_weight). Only valid frames count; a velocity term counts
only pairs of consecutive frames that are both valid.

Shape legend: B batch, T frames, F features.
"""

import jax.numpy as jnp

from dfe_jax.formats import feature_spaces

_F32 = jnp.float32


def masked_mse(recon_BTF, x_BTF, mask_BT, feature_idx=None):
  """Mean squared error over valid frames (and the given feature indices, default all)."""
  err_BTF = (recon_BTF.astype(_F32) - x_BTF.astype(_F32)) ** 2
  if feature_idx is not None:
    err_BTF = err_BTF[..., jnp.asarray(feature_idx)]
  w_BT = mask_BT.astype(_F32)
  return jnp.sum(jnp.mean(err_BTF, axis=-1) * w_BT) / jnp.maximum(jnp.sum(w_BT), 1.0)


def velocity_mse(recon_BTF, x_BTF, mask_BT):
  """MSE of first differences in time, over pairs of consecutive valid frames."""
  d_recon = jnp.diff(recon_BTF.astype(_F32), axis=1)
  d_x = jnp.diff(x_BTF.astype(_F32), axis=1)
  pair_mask = mask_BT[:, 1:] & mask_BT[:, :-1]
  return masked_mse(d_recon, d_x, pair_mask)


def group_mse(recon_BTF, x_BTF, mask_BT, feature_names):
  """Reconstruction MSE per feature group (`exp`, `jaw`, `mouth`, ...) as `recon/group/<g>_mse`."""
  return {f"recon/group/{name}_mse": masked_mse(recon_BTF, x_BTF, mask_BT, idx)
          for name, idx in feature_spaces.feature_groups(feature_names).items()}


def total_loss(recon_BTF, x_BTF, mask_BT, aux, loss_config, feature_names):
  """Weighted training loss and a flat metrics dict (loss terms, group MSEs, scalar aux metrics).

  `aux` is the model's aux dict; its VQ terms (`commit_loss`, `codebook_loss`, `ortho_loss`,
  `sparsity_loss`) are already reduced over valid latents. Zero-weight terms are left out of the
  loss (so XLA can drop their computation) but still reported.
  """
  mask_BT = mask_BT.astype(bool)
  terms = {
      "recon": (loss_config.recon_weight, masked_mse(recon_BTF, x_BTF, mask_BT)),
      "velocity": (loss_config.velocity_weight, velocity_mse(recon_BTF, x_BTF, mask_BT)),
      "commit": (loss_config.commit_weight, aux["commit_loss"]),
      "codebook": (loss_config.codebook_weight, aux["codebook_loss"]),
      "ortho": (loss_config.ortho_weight, aux["ortho_loss"]),
      "sparsity": (loss_config.sparsity_weight, aux["sparsity_loss"]),
  }
  loss = jnp.zeros((), _F32)
  metrics = {}
  for name, (weight, value) in terms.items():
    if weight:
      loss = loss + weight * value
    metrics[f"loss/{name}"] = value
  metrics["loss/total"] = loss
  metrics.update(group_mse(recon_BTF, x_BTF, mask_BT, feature_names))
  for key, value in aux.items():
    if "/" in key and jnp.ndim(value) == 0:
      metrics[key] = value
  return loss, metrics
