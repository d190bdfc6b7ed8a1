"""Linear probes of tokens against baselines (no JAX, no TensorFlow)."""
