"""Every convolution of the reference model timed alone: forward, input and kernel gradient.

  python -m benchmarks.conv_layers [--repeats=9] [--conv_impl=auto]

The layers are the `Conv` calls of the reference model (`reference.config()`, as in
`benchmarks.train_step`) at its global batch with `--conv_impl`'s kernels, recorded while the
model initialises; with the XLA:CPU kernels the decoder's last upsampling conv and the conv after
it run as one composed conv (`Conv.followed_by`), and are timed as one layer. Each distinct layer
is timed alone, jitted, as three programs: the forward, the input gradient and the kernel
(+ bias) gradient, each the median of `--repeats` calls on random data. FLOPs are counted as the
reference counts them (2 x MACs of the conv as written, so the XLA:CPU kernels' folded
upsampling convs show what they save). The first conv's input gradient is not part of a train
step (its input is the data) and is left out of the totals.

This is a profile, not the speed figure: inside the train step XLA runs independent ops
concurrently and fuses the surrounding element-wise work, so the step is not the sum of these
times. It says which passes run near the GEMM peak measured in the same run and which do not.
Prints one line per layer, the totals, and one JSON line last.
"""

import collections
import json
import time

from absl import app
from absl import flags
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from benchmarks import peak
from benchmarks import reference
from benchmarks import timing

from dfe_jax import models
from dfe_jax.models import temporal_conv
from dfe_jax.models import xla_cpu

_REPEATS = flags.DEFINE_integer("repeats", 9, "Timed calls per pass (the median is kept).",
                                lower_bound=1)
_CONV_IMPL = flags.DEFINE_enum("conv_impl", "auto", models.CONV_IMPLS,
                               "The kernels timed (config.model.conv_impl).")

PASSES = ("forward", "input_grad", "kernel_grad")

Layer = collections.namedtuple(
    "Layer", "name input_shape features kernel_size stride dilation upsample then",
    defaults=(None,))  # then: (features, kernel_size) of a plain conv composed after this one.


def conv_layers(model_config, batch, frames):
  """The model's `Conv` calls in forward order, as Layers (input shape includes the batch)."""
  model = models.get_model(model_config)
  layers = []

  def record(next_fun, args, kwargs, context):
    module, method = context.module, context.method_name
    if isinstance(module, temporal_conv.Conv) and method in ("__call__", "followed_by"):
      name, then = "/".join(module.path), None
      if method == "followed_by":
        name, then = f"{name}+{args[0].name}", (args[0].features, args[0].kernel_size)
      layers.append(Layer(name, tuple(args[-1].shape), module.features, module.kernel_size,
                          module.stride, module.dilation, module.upsample, then))
    return next_fun(*args, **kwargs)

  x = jnp.zeros((batch, frames, model_config.feature_dim), jnp.float32)
  with nn.intercept_methods(record):
    jax.eval_shape(lambda: model.init({"params": jax.random.PRNGKey(0)}, x,
                                      jnp.ones(x.shape[:2], bool), train=True))
  return layers


def conv_flops(layer):
  """2 x MACs of the conv (and the one composed after it) as written, at their output lengths."""
  batch, frames, channels = layer.input_shape
  out_frames = frames * layer.upsample // layer.stride
  flops = 2 * batch * out_frames * layer.kernel_size * channels * layer.features
  if layer.then:
    features, kernel_size = layer.then
    flops += 2 * batch * out_frames * kernel_size * layer.features * features
  return flops


class _Composed(nn.Module):
  """A Layer with `then`: its conv followed by the plain one, composed as the XLA:CPU decoder runs
  them."""
  layer: Layer

  @nn.compact
  def __call__(self, x_BTC):
    features, kernel_size = self.layer.then
    first = xla_cpu.Conv(self.layer.features, self.layer.kernel_size, self.layer.stride,
                         self.layer.dilation, self.layer.upsample)
    return first.followed_by(xla_cpu.Conv(features, kernel_size), x_BTC)


def time_layer(layer, repeats, conv_impl="auto"):
  """{pass: seconds} of one layer alone, on the kernels `conv_impl` names."""
  conv_cls = models.conv_modules(models.resolve_conv_impl(conv_impl)).Conv
  conv = (_Composed(layer) if layer.then else
          conv_cls(layer.features, layer.kernel_size, layer.stride, layer.dilation,
                   layer.upsample))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(layer.input_shape, np.float32))
  params = conv.init(jax.random.PRNGKey(0), x)
  y_shape = jax.eval_shape(conv.apply, params, x).shape
  dy = jnp.asarray(rng.standard_normal(y_shape, np.float32))

  def pullback(p, x):
    return jnp.vdot(conv.apply(p, x), dy)

  programs = {"forward": jax.jit(conv.apply),
              "input_grad": jax.jit(jax.grad(pullback, argnums=1)),
              "kernel_grad": jax.jit(jax.grad(pullback, argnums=0))}
  return {name: timing.median_seconds(fn, (params, x), repeats) for name, fn in programs.items()}


def main(argv):
  del argv
  config = reference.config()
  config.model.conv_impl = _CONV_IMPL.value
  layers = conv_layers(config.model, config.global_batch_size, config.window_frames)
  distinct = {layer._replace(name="") for layer in layers}
  gemm = peak.gemm_gflops()
  totals = dict.fromkeys(PASSES, 0.0)
  flops_total = dict.fromkeys(PASSES, 0.0)
  rows, timed = [], {}
  print(f"{len(layers)} convs, {len(distinct)} distinct; GEMM 2048^2 {gemm:.1f} GFLOP/s", flush=True)
  for index, layer in enumerate(layers):
    key = layer._replace(name="")  # Layers of the same shape are timed once.
    if key not in timed:
      timed[key] = time_layer(layer, _REPEATS.value, _CONV_IMPL.value)
    seconds, flops = timed[key], conv_flops(layer)
    row = {"name": layer.name, "input_shape": layer.input_shape, "features": layer.features,
           "kernel_size": layer.kernel_size, "stride": layer.stride, "dilation": layer.dilation,
           "upsample": layer.upsample, "then": layer.then, "flops": flops}
    parts = []
    for name in PASSES:
      row[f"{name}_ms"] = seconds[name] * 1e3
      row[f"{name}_gflops"] = flops / seconds[name] / 1e9
      parts.append(f"{name} {seconds[name] * 1e3:6.1f} ms {flops / seconds[name] / 1e9:6.1f}")
      if not (index == 0 and name == "input_grad"):
        totals[name] += seconds[name]
        flops_total[name] += flops
    rows.append(row)
    shape = "x".join(map(str, layer.input_shape[1:]))
    then = f" then k{layer.then[1]}->{layer.then[0]}" if layer.then else ""
    print(f"{layer.name:28s} {shape:>8s}->{layer.features:<3d} k{layer.kernel_size} "
          f"s{layer.stride} d{layer.dilation} u{layer.upsample}{then} | " + " | ".join(parts),
          flush=True)
  all_seconds = sum(totals.values())
  print("totals (GFLOP/s, share of the GEMM peak): " + " | ".join(
      f"{name} {totals[name] * 1e3:.0f} ms {flops_total[name] / totals[name] / 1e9:.1f} "
      f"({flops_total[name] / totals[name] / 1e9 / gemm:.2f})" for name in PASSES)
        + f" | all {all_seconds * 1e3:.0f} ms", flush=True)
  print(json.dumps({
      "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
      "jax": jax.__version__, "backend": jax.default_backend(), "gemm_gflops": gemm,
      "conv_impl": models.resolve_conv_impl(_CONV_IMPL.value),
      "batch": config.global_batch_size, "frames": config.window_frames,
      "totals_ms": {name: totals[name] * 1e3 for name in PASSES},
      "totals_gflops": {name: flops_total[name] / totals[name] / 1e9 for name in PASSES},
      "layers": rows}))


if __name__ == "__main__":
  app.run(main)
