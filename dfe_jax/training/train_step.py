"""The pure training and evaluation steps of the RVQ-VAE, and the state they carry.

Legend: B batch (windows), T frames, F features, L levels, K codes.
"""

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from dfe_jax import models
from dfe_jax.training import losses

# Steps fold their index into the state's key; k-means takes a stream no step reaches.
_KMEANS_STREAM = 2**32 - 1


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data position (which is `step`)."""
  step: jax.Array
  params: Any
  opt_state: Any
  vq_stats: Any
  rng: jax.Array


def learning_rate_schedule(config):
  """Linear warm-up to `learning_rate`, then cosine decay to zero at `total_steps`."""
  return optax.warmup_cosine_decay_schedule(
      init_value=0.0, peak_value=config.learning_rate, warmup_steps=config.warmup_steps,
      decay_steps=max(config.total_steps, config.warmup_steps + 1), end_value=0.0)


def make_optimizer(config):
  """AdamW with global-norm gradient clipping and the warm-up + cosine schedule."""
  return optax.chain(
      optax.clip_by_global_norm(config.grad_clip_norm),
      optax.adamw(learning_rate_schedule(config), b1=config.adam_b1, b2=config.adam_b2,
                  weight_decay=config.weight_decay))


def create_state(model, optimizer, rng, window_frames, num_features):
  """A fresh state: initialised parameters, codebook statistics and optimizer moments."""
  init_rng, state_rng = jax.random.split(rng)
  x = jnp.zeros((1, window_frames, num_features), jnp.float32)
  # train=True skips the eval-only prefix decodings, which would only slow compilation.
  variables = model.init({"params": init_rng, "vq": init_rng}, x, jnp.ones(x.shape[:2], bool),
                         train=True)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    opt_state=optimizer.init(params), vq_stats=variables.get("vq_stats", {}),
                    rng=state_rng)


def init_codebooks(model, state, batch):
  """Fits the codebooks by k-means to the encoder outputs of one global batch."""
  variables = {"params": state.params, "vq_stats": state.vq_stats}
  rng = jax.random.fold_in(state.rng, _KMEANS_STREAM)
  variables = models.init_codebooks(model, variables, batch["x"], batch["mask"], rng)
  return state.replace(params=variables["params"], vq_stats=variables.get("vq_stats", {}))


def train_step(model, optimizer, loss_config, feature_names, state, batch):
  """One optimisation step on a global batch; returns the new state and scalar metrics."""
  rng = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    (recon, aux), updates = model.apply(
        {"params": params, "vq_stats": state.vq_stats}, batch["x"], batch["mask"], train=True,
        rngs={"vq": rng, "dropout": rng}, mutable=["vq_stats"])
    loss, metrics = losses.total_loss(recon, batch["x"], batch["mask"], aux, loss_config,
                                      feature_names)
    return loss, (metrics, updates.get("vq_stats", state.vq_stats))

  grads, (metrics, vq_stats) = jax.grad(loss_fn, has_aux=True)(state.params)
  updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {f"train/{k}": v for k, v in metrics.items()}
  metrics["train/grad_norm"] = optax.global_norm(grads)
  metrics["train/valid_frames"] = jnp.sum(batch["mask"])
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            vq_stats=vq_stats)
  return new_state, metrics


def eval_sums(model, state, batch):
  """Sums over one eval batch that add up across the whole split (see `eval_metrics`)."""
  recon, aux = model.apply({"params": state.params, "vq_stats": state.vq_stats}, batch["x"],
                           batch["mask"], train=False)
  x, recon = batch["x"].astype(jnp.float32), recon.astype(jnp.float32)
  w_BT = batch["mask"].astype(jnp.float32)
  cosine_BT = jnp.sum(x * recon, -1) / jnp.maximum(
      jnp.linalg.norm(x, axis=-1) * jnp.linalg.norm(recon, axis=-1), 1e-8)
  pair_BT = w_BT[:, 1:] * w_BT[:, :-1]
  velocity_se = jnp.mean((jnp.diff(recon, axis=1) - jnp.diff(x, axis=1)) ** 2, -1)
  frames = jnp.sum(w_BT)
  sums = {
      "frames": frames,
      "pairs": jnp.sum(pair_BT),
      "recon_se": jnp.sum(jnp.mean((recon - x) ** 2, -1) * w_BT),
      "cosine": jnp.sum(cosine_BT * w_BT),
      "velocity_se": jnp.sum(velocity_se * pair_BT),
  }
  if "vq/counts_LK" in aux:
    sums["counts_LK"] = aux["vq/counts_LK"]
  for key, value in aux.items():
    if key.startswith("recon/prefix"):
      sums[key] = value * frames
  return sums


def eval_metrics(sums):
  """Split-level metrics from the summed `eval_sums` (host-side, NumPy or jax arrays)."""
  frames = max(float(sums["frames"]), 1.0)
  metrics = {
      "eval/recon_mse": float(sums["recon_se"]) / frames,
      "eval/recon_cosine": float(sums["cosine"]) / frames,
      "eval/velocity_mse": float(sums["velocity_se"]) / max(float(sums["pairs"]), 1.0),
      "eval/frames": float(sums["frames"]),
  }
  for key, value in sums.items():
    if key.startswith("recon/prefix"):
      metrics[f"eval/{key}"] = float(value) / frames
  if "counts_LK" in sums:
    usage = models.usage_metrics_from_counts(jnp.asarray(sums["counts_LK"]))
    metrics.update({f"eval/{k}": float(v) for k, v in usage.items()})
  return metrics
