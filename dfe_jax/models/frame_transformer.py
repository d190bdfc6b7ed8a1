"""The paper's per-frame transformer encoder and decoder: one latent (and one code row) per frame.

Each frame's feature vector is zero-padded to S * P values and read as S sub-vectors of size
`subvector_dim`; a small pre-norm transformer mixes them and mean-pools to one latent. The decoder
broadcasts a frame's latent to S positional queries, runs its own transformer and writes the
sub-vectors back. Frames never see each other, so codes are [T, L] with no temporal context.

Shape legend: B batch, T frames, F feature_dim, S sub-vectors per frame, P subvector_dim,
W width, D code_dim, N = B * T frames.
"""

import flax.linen as nn
import jax.numpy as jnp


def num_subvectors(feature_dim, subvector_dim):
  """How many sub-vectors a frame of `feature_dim` values splits into (last one zero-padded)."""
  return -(-feature_dim // subvector_dim)


class Block(nn.Module):
  """Pre-norm transformer block: self-attention then MLP, each residual."""
  width: int
  num_heads: int
  mlp_dim: int
  dtype: str = "float32"

  @nn.compact
  def __call__(self, h_NSW):
    a = nn.LayerNorm(dtype=self.dtype)(h_NSW)
    h_NSW = h_NSW + nn.MultiHeadDotProductAttention(
        num_heads=self.num_heads, dtype=self.dtype, deterministic=True)(a)
    m = nn.LayerNorm(dtype=self.dtype)(h_NSW)
    m = nn.Dense(self.width, dtype=self.dtype)(nn.gelu(nn.Dense(self.mlp_dim, dtype=self.dtype)(m)))
    return h_NSW + m


class Encoder(nn.Module):
  """Frames [B, T, F] -> one latent per frame [B, T, D]."""
  code_dim: int = 128
  width: int = 128
  subvector_dim: int = 8
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dtype: str = "float32"

  @nn.compact
  def __call__(self, x_BTF, mask_BT):
    batch, frames, feature_dim = x_BTF.shape
    num_sub = num_subvectors(feature_dim, self.subvector_dim)
    x_BTF = jnp.where(mask_BT[..., None], x_BTF, 0.0)
    x_BTF = jnp.pad(x_BTF, ((0, 0), (0, 0), (0, num_sub * self.subvector_dim - feature_dim)))
    h = nn.Dense(self.width, dtype=self.dtype)(
        x_BTF.reshape(batch * frames, num_sub, self.subvector_dim).astype(self.dtype))
    h = h + self.param("pos_embedding", nn.initializers.normal(0.02), (num_sub, self.width))
    for _ in range(self.num_layers):
      h = Block(self.width, self.num_heads, self.mlp_dim, self.dtype)(h)
    pooled_NW = jnp.mean(nn.LayerNorm(dtype=self.dtype)(h), axis=1)
    return nn.Dense(self.code_dim, dtype=self.dtype)(pooled_NW).reshape(batch, frames, -1)


class Decoder(nn.Module):
  """Latents [B, T, D] -> frames [B, T, F]."""
  feature_dim: int = 53
  width: int = 128
  subvector_dim: int = 8
  num_layers: int = 2
  num_heads: int = 4
  mlp_dim: int = 256
  dtype: str = "float32"

  @nn.compact
  def __call__(self, z_BTD):
    batch, frames, _ = z_BTD.shape
    num_sub = num_subvectors(self.feature_dim, self.subvector_dim)
    h_NW = nn.Dense(self.width, dtype=self.dtype)(
        z_BTD.reshape(batch * frames, -1).astype(self.dtype))
    pos_SW = self.param("pos_embedding", nn.initializers.normal(0.02), (num_sub, self.width))
    h = h_NW[:, None, :] + pos_SW[None].astype(self.dtype)
    for _ in range(self.num_layers):
      h = Block(self.width, self.num_heads, self.mlp_dim, self.dtype)(h)
    out = nn.Dense(self.subvector_dim, dtype=self.dtype)(nn.LayerNorm(dtype=self.dtype)(h))
    out = out.reshape(batch, frames, num_sub * self.subvector_dim)[..., :self.feature_dim]
    return out.astype(jnp.float32)
