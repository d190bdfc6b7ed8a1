"""`relu`: `jax.nn.relu`'s values and gradient, written with no constant so XLA:CPU stores it.

Every conv's kernel gradient transposes the conv's input to [channels, batch x time] (see
`conv1d.py`), and that input is a ReLU of the previous conv's output plus its bias. With
`jax.nn.relu`, XLA:CPU fuses the bias add and the ReLU into each such transpose, recomputing them
rather than reading the activation the forward pass already stored, and a transpose fused with a
broadcast (the bias, the ReLU's zero) runs several times slower than a plain one
(`python -m benchmarks.fused_transposes`). Written as max(x, x - x), the ReLU has no constant
operand, and XLA then leaves the bias add and ReLU in a fusion of their own and transposes the
stored activation (faster on XLA:CPU hosts where such transposes are slow; see
docs/performance.md for the step's speed).

The gradient is `jax.nn.relu`'s (the cotangent where x > 0, else 0) through a custom JVP, so
autodiff does not differentiate both operands of the maximum. Values equal `jax.nn.relu` for every
finite input and NaN; +-inf give NaN (inf - inf), which the trainer's NaN guard stops on.
"""

import jax
import jax.numpy as jnp


@jax.custom_jvp
def relu(x):
  """max(x, 0) as max(x, x - x): no broadcast constant for XLA to fuse into a transpose."""
  return jnp.maximum(x, x - x)


@relu.defjvp
def _relu_jvp(primals, tangents):
  (x,), (t,) = primals, tangents
  return relu(x), jnp.where(x > 0, t, jnp.zeros_like(t))
