"""The training loop: data-parallel `jax.jit` over a ("data",) mesh, eval, checkpoints, logs."""

import functools
import itertools
import json
import math
import os
import signal
import time

from absl import logging
import jax
import ml_collections

from dfe_jax import models
from dfe_jax.data import input_pipeline
from dfe_jax.formats import dataset_info
from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs
from dfe_jax.formats import provenance
from dfe_jax.training import checkpointing
from dfe_jax.training import device_batches
from dfe_jax.training import device_mesh
from dfe_jax.training import metric_writer
from dfe_jax.training import train_step

class NonFiniteLossError(FloatingPointError):
  """Training produced a NaN or infinite loss; the message names the step."""


def cpu_allocator_hint(backend, environ):
  """A log line for CPU runs started without glibc's huge-page tunable, else None.

  XLA:CPU maps each train step's workspace afresh; with `glibc.malloc.hugetlb=1` (glibc >= 2.35)
  glibc backs it with 2 MiB pages and the step faults a few hundred pages instead of ~100,000
  (docs/performance.md). glibc reads it at start-up, so only the user can set it.
  """
  if backend != "cpu" or "glibc.malloc.hugetlb" in environ.get("GLIBC_TUNABLES", ""):
    return None
  return ("train: on CPU, start with GLIBC_TUNABLES=glibc.malloc.hugetlb=1 for faster steps "
          "(2 MiB pages for XLA's per-step workspace; docs/performance.md)")


def resolve_config(config, info):
  """Checks the config against the data and fills in what the data decides (feature count)."""
  config = ml_collections.ConfigDict(config.to_dict())
  config.model.feature_dim = info["num_features"]
  if config.total_steps < 1:
    raise ValueError(f"config.total_steps must be positive, got {config.total_steps}")
  return config


def _write_run_files(workdir, config, info):
  if jax.process_index() != 0:
    return
  dataset_info.write(workdir, info)
  with outputs.atomic_open(os.path.join(workdir, "config.json")) as f:
    json.dump({"config": config.to_dict(), **provenance.training_run()}, f, indent=1)


class _StopSignal:
  """Turns SIGTERM/SIGINT into a flag the loop checks, so it can save and exit cleanly."""

  def __init__(self):
    self.received = None
    self._previous = {}

  def __enter__(self):
    for sig in (signal.SIGTERM, signal.SIGINT):
      self._previous[sig] = signal.signal(sig, self._handle)
    return self

  def _handle(self, signum, frame):
    del frame
    self.received = signal.Signals(signum).name

  def __exit__(self, *exc):
    for sig, handler in self._previous.items():
      signal.signal(sig, handler)


def _check_finite(step, metrics):
  loss = float(metrics["train/loss/total"])
  if not math.isfinite(loss):
    raise NonFiniteLossError(f"non-finite loss {loss} at step {step}; the last checkpoint "
                             "before it is kept")


def _codebooks_initialised(state):
  """False only for a quantizer whose `initialised` flag is still down."""
  flags = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(state.vq_stats)
           if "initialised" in jax.tree_util.keystr(path)]
  return all(bool(jax.device_get(f)) for f in flags)


def evaluate(eval_fn, state, data_dir, info, config, mesh, local_batch):
  """Metrics over every window of the eval split (sums accumulated on device, fetched once)."""
  ds = input_pipeline.eval_dataset(
      data_dir, info, config.eval_split, window_frames=config.window_frames,
      local_batch_size=local_batch, process_index=jax.process_index(),
      process_count=jax.process_count())
  totals = None
  for batch in device_batches.global_batches(ds, mesh):
    sums = eval_fn(state, batch)
    totals = sums if totals is None else jax.tree.map(lambda a, b: a + b, totals, sums)
  return train_step.eval_metrics(jax.device_get(totals))


def train_and_evaluate(config, workdir, mesh=None):
  """Trains `config` on `config.data_dir` into `workdir`; returns the final eval metrics.

  `mesh` defaults to a ("data",) mesh over every device of every process.
  """
  info = input_pipeline.load_info(config.data_dir)
  config = resolve_config(config, info)
  input_pipeline.process_shards(info, config.eval_split, 0, 1)  # Missing split: stop before step 1.
  mesh = mesh or device_mesh.make_mesh()
  local_batch = device_batches.check_batch_size(config.global_batch_size, mesh)
  replicated = device_mesh.replicated(mesh)
  data_sharding = device_mesh.data_sharding(mesh)
  filesystem.makedirs(workdir)
  _write_run_files(workdir, config, info)
  feature_names = tuple(info["feature_names"])

  model = models.get_model(config.model)
  optimizer = train_step.make_optimizer(config)
  create = jax.jit(functools.partial(train_step.create_state, model, optimizer,
                                     window_frames=config.window_frames,
                                     num_features=info["num_features"]),
                   out_shardings=replicated)
  state = create(jax.random.PRNGKey(config.seed))
  checkpoints = checkpointing.Checkpoints(workdir, model, config.keep_checkpoints,
                                          config.best_metric, config.best_mode)
  state, origin = checkpoints.restore(state, config.get("init_from", ""))
  start_step = int(jax.device_get(state.step))
  logging.info("train: %s; %d devices, %d processes, global batch %d", origin,
               mesh.devices.size, jax.process_count(), config.global_batch_size)

  step_fn = jax.jit(
      functools.partial(train_step.train_step, model, optimizer, config.loss, feature_names),
      in_shardings=(replicated, data_sharding), out_shardings=(replicated, replicated),
      donate_argnums=0)
  eval_fn = jax.jit(functools.partial(train_step.eval_sums, model),
                    in_shardings=(replicated, data_sharding), out_shardings=replicated)
  train_ds = input_pipeline.train_dataset(
      config.data_dir, info, window_frames=config.window_frames,
      window_stride=config.window_stride, local_batch_size=local_batch, seed=config.seed,
      start_step=start_step, shuffle_buffer=config.shuffle_buffer,
      process_index=jax.process_index(), process_count=jax.process_count())
  batches = device_batches.global_batches(train_ds, mesh)
  writer = metric_writer.MetricWriter(workdir, start_step)
  meta = lambda step: {"step": step, "data_position_batches": step, "seed": config.seed,
                       "dataset_manifest_sha256": info["manifest"]["sha256"]}

  # Whatever stops the loop, saves already started are finished and the files closed: an error
  # loses no checkpoint and leaves no asynchronous write running into interpreter shutdown.
  try:
    first = next(batches)
    batches = itertools.chain([first], batches)
    if not _codebooks_initialised(state):
      state = jax.jit(functools.partial(train_step.init_codebooks, model),
                      out_shardings=replicated)(state, first)
      logging.info("train: codebooks initialised by k-means on the first global batch")

    eval_metrics = {}
    progress = _Progress(config, writer, start_step)
    with _StopSignal() as stop:
      for step in range(start_step, config.total_steps):
        state, metrics = step_fn(state, next(batches))
        progress.push(step, metrics)
        done = step + 1
        last = done == config.total_steps
        if stop.received or last or done % config.checkpoint_every_steps == 0:
          _check_finite(step, jax.device_get(metrics))  # Never save a state that went bad.
          checkpoints.save(state, meta(done))
        if last or done % config.eval_every_steps == 0:
          eval_metrics = evaluate(eval_fn, state, config.data_dir, info, config, mesh,
                                  local_batch)
          writer.write(done, eval_metrics)
          checkpoints.save_if_best(state, meta(done), eval_metrics)
          logging.info("eval at step %d: recon_mse %.4f  cosine %.4f  velocity_mse %.4f", done,
                       eval_metrics["eval/recon_mse"], eval_metrics["eval/recon_cosine"],
                       eval_metrics["eval/velocity_mse"])
        if stop.received:
          logging.warning("train: %s received; saved step %d and stopping", stop.received, done)
          break
    progress.flush()
  finally:
    checkpoints.wait()
    checkpoints.close()
    writer.close()
  return eval_metrics


class _Progress:
  """Fetches each step's metrics one step late (the host never waits for the device), checks
  them, and every `log_every_steps` writes them with steps/s, frames/s and ETA."""

  def __init__(self, config, writer, start_step):
    self.config, self.writer = config, writer
    self.pending = None
    self.timer_step, self.timer_start = start_step, time.time()
    self.frames_per_step = config.global_batch_size * config.window_frames
    self.schedule = train_step.learning_rate_schedule(config)

  def push(self, step, metrics):
    if self.pending is not None:
      self._emit(*self.pending)
    self.pending = (step, metrics)

  def flush(self):
    if self.pending is not None:
      self._emit(*self.pending)
      self.pending = None

  def _emit(self, step, metrics):
    metrics = jax.device_get(metrics)
    _check_finite(step, metrics)
    done, total = step + 1, self.config.total_steps
    if done % self.config.log_every_steps and done != total:
      return
    rate = (done - self.timer_step) / max(time.time() - self.timer_start, 1e-9)
    self.timer_step, self.timer_start = done, time.time()
    metrics.update({"train/learning_rate": self.schedule(step),
                    "train/steps_per_second": rate,
                    "train/frames_per_second": rate * self.frames_per_step})
    self.writer.write(done, metrics)
    seconds = int((total - done) / max(rate, 1e-9))
    logging.info("step %d/%d  loss %.4f  recon %.4f  %.2f steps/s  %.0f frames/s  ETA %dm%02ds",
                 done, total, metrics["train/loss/total"], metrics["train/loss/recon"], rate,
                 rate * self.frames_per_step, seconds // 60, seconds % 60)
