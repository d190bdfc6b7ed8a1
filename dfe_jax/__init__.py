"""dfe_jax: discrete facial-expression tokens learned by a residual VQ-VAE in JAX/Flax."""

import os

# TensorFlow serves only as the input pipeline's file reader; its C++ start-up chatter
# (oneDNN notices, CPU feature hints) drowns the commands' own progress lines.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

__version__ = "0.1.0"
