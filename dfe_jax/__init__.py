"""dfe_jax: discrete facial-expression tokens learned by a residual VQ-VAE in JAX/Flax."""

__version__ = "0.1.0"
