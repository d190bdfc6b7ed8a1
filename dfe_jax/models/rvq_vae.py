"""The RVQ-VAE: encoder -> residual quantizer (or continuous bottleneck) -> decoder.

`Model` pads any sequence length to the downsampling multiple, tracks which latent steps hold
valid frames, and returns `(recon, aux)` with `aux` a flat dict of named arrays (codes, latents,
losses, per-level metrics). The encoder and decoder come from `temporal_conv.py` or
`frame_transformer.py`; `dfe_jax.models.get_model` assembles them from `config.model`.

Shape legend: B batch, T frames, T' = ceil(T / 2**downsample_log2) latent steps (named S in
names), F feature_dim, D code_dim, L levels.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp


def latent_mask(mask_BT, downsample_log2):
  """A latent step is valid when any frame it covers is valid; T must be a padded multiple."""
  batch, frames = mask_BT.shape
  factor = 2 ** downsample_log2
  return jnp.any(mask_BT.reshape(batch, frames // factor, factor), axis=-1)


def masked_frame_mse(recon_BTF, x_BTF, mask_BT):
  """Mean squared error over valid frames (and all features)."""
  w_BT = mask_BT.astype(jnp.float32)
  se_BT = jnp.mean((recon_BTF.astype(jnp.float32) - x_BTF.astype(jnp.float32)) ** 2, axis=-1)
  return jnp.sum(se_BT * w_BT) / jnp.maximum(jnp.sum(w_BT), 1.0)


class Model(nn.Module):
  """Encoder -> quantizer -> decoder, returning `(recon_BTF, aux)`."""
  encoder: nn.Module
  quantizer: nn.Module
  decoder: nn.Module
  downsample_log2: int = 0
  prefix_metrics_in_train: bool = False  # Costs L extra decoder passes per step.

  def _pad(self, x_BTF, mask_BT):
    """Pads frames to the downsampling multiple with invalid zeros."""
    frames = x_BTF.shape[1]
    factor = 2 ** self.downsample_log2
    extra = -frames % factor
    x_BTF = jnp.pad(x_BTF, ((0, 0), (0, extra), (0, 0)))
    mask_BT = jnp.pad(mask_BT.astype(bool), ((0, 0), (0, extra)))
    return x_BTF, mask_BT

  def _encode(self, x_BTF, mask_BT):
    x_BTF, mask_BT = self._pad(x_BTF, mask_BT)
    z_BSD = self.encoder(x_BTF, mask_BT).astype(jnp.float32)
    return x_BTF, mask_BT, z_BSD, latent_mask(mask_BT, self.downsample_log2)

  def __call__(self, x_BTF, mask_BT, train=False):
    """Reconstructs x [B, T, F] (invalid frames masked); returns (recon [B, T, F], aux)."""
    frames = x_BTF.shape[1]
    x_pad, mask_pad, z_BSD, mask_BS = self._encode(x_BTF, mask_BT)
    zq_BSD, aux = self.quantizer(z_BSD, mask_BS, train=train)
    recon_BTF = self.decoder(zq_BSD)
    aux = dict(aux, latents=z_BSD, latent_mask=mask_BS)
    wanted = not train or self.prefix_metrics_in_train
    if aux["codes"].shape[-1] and wanted and not self.is_initializing():
      aux.update(self._prefix_metrics(aux["codes"], x_pad, mask_pad))
    return recon_BTF[:, :frames], aux

  def _prefix_metrics(self, codes_BSL, x_BTF, mask_BT):
    """Reconstruction MSE from the first l levels only, l = 1..L (one batched decoder call)."""
    batch, steps, num_levels = codes_BSL.shape
    keep_LL = jnp.arange(num_levels)[None, :] < jnp.arange(1, num_levels + 1)[:, None]
    prefix_codes = jnp.where(keep_LL[:, None, None, :], codes_BSL[None], -1)
    prefix_codes = jax.lax.stop_gradient(prefix_codes).reshape(num_levels * batch, steps, -1)
    recon = self.decoder(self.quantizer.decode(prefix_codes))
    recon = jax.lax.stop_gradient(recon).reshape((num_levels,) + x_BTF.shape)
    return {f"recon/prefix{l + 1}_mse": masked_frame_mse(recon[l], x_BTF, mask_BT)
            for l in range(num_levels)}

  def encode(self, x_BTF, mask_BT):
    """Eval-mode tokenization: dict with codes [B, S, L], latents [B, S, D], latent_mask [B, S].

    Steps outside `latent_mask` still carry codes (of zero-padded frames): filter by the mask.
    """
    _, _, z_BSD, mask_BS = self._encode(x_BTF, mask_BT)
    _, aux = self.quantizer(z_BSD, mask_BS, train=False)
    return {"codes": aux["codes"], "latents": z_BSD, "latent_mask": mask_BS}

  def decode_codes(self, codes_BSL):
    """Frames [B, S * 2**downsample_log2, F] from codes [B, S, L]; -1 skips a level."""
    return self.decoder(self.quantizer.decode(codes_BSL))

  def decode_latents(self, z_BSD):
    """Frames from continuous latents (the `none` quantizer's tokens)."""
    return self.decoder(z_BSD)

  def kmeans_init(self, x_BTF, mask_BT):
    """Fits the codebooks to the encoder outputs of this (global) batch; returns nothing."""
    _, _, z_BSD, mask_BS = self._encode(x_BTF, mask_BT)
    self.quantizer.kmeans_init(z_BSD, mask_BS)


def init_codebooks(model, variables, x_BTF, mask_BT, rng):
  """Pure, jittable k-means initialisation: returns `variables` with fitted codebooks.

  Only `vq_stats` changes for an EMA codebook (and `params/.../codebook` for a gradient-learned
  one). Call it once on the first global batch; it works on sharded inputs inside `jax.jit`.
  """
  _, updates = model.apply(variables, x_BTF, mask_BT, method=Model.kmeans_init,
                           rngs={"vq": rng}, mutable=["vq_stats", "params"])
  return dict(variables, **updates)
