"""`relu`: `jax.nn.relu`'s values and gradient, written with no constant operand.

Each conv's kernel gradient transposes its input, a ReLU of the previous conv's output plus bias.
With `jax.nn.relu`, XLA:CPU fuses the bias add and the ReLU's broadcast zero into that transpose,
which then runs several times slower than transposing the stored activation
(`python -m benchmarks.fused_transposes`). max(x, x - x) has no broadcast to fuse. Its gradient is
`jax.nn.relu`'s through a custom JVP; +-inf give NaN (inf - inf), which the trainer's NaN guard
stops on.
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
