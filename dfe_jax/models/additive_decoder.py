"""A decoder additive in the tokens: each latent step's frames are one linear map of its latent.

  x_hat_t = W z_s + b   for every frame t of latent step s (nearest-neighbour upsampling)

With the residual quantizer's z_s = sum_l c_{k_l}, x_hat_t = sum_l W c_{k_l} + b: a token *is* a
deformation of the face, W c_k, the same whatever other tokens share its step and wherever it
occurs, so a code's decoded effect (`tokenizer.code_effects`) is exactly what it adds to every
frame it covers. The price is expressiveness: no temporal shape within a step and no
interaction between levels. `config.model.decoder = "additive"` selects it in place of the
encoder's own decoder (temporal conv or frame transformer); the encoder is unchanged. Its one
layer (`architecture.additive_decoder_layers`) exports to `model.npz` like the conv decoder's.

Shape legend: B batch, S latent steps, D code_dim, F feature_dim, T = S * 2**downsample_log2.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp

from dfe_jax.models import architecture
from dfe_jax.models import temporal_conv


class Decoder(nn.Module):
  """Latents [B, S, D] -> frames [B, S * 2**downsample_log2, F], affine in the latent."""
  feature_dim: int = 53
  downsample_log2: int = 2
  dtype: str = "float32"

  def layers(self):
    """This decoder as `architecture` layers: one `readout` conv (kernel 1) after upsampling."""
    return architecture.additive_decoder_layers(self.feature_dim, self.downsample_log2)

  @nn.compact
  def __call__(self, z_BSD):
    h = architecture.run(
        self.layers(), z_BSD.astype(self.dtype),
        lambda layer, h: temporal_conv.conv_module(temporal_conv.Conv, layer, self.dtype)(h),
        jax.nn.relu)
    return h.astype(jnp.float32)
