"""The main job's stages: synth -> ingest -> train (and the continuous baseline) -> tokenize ->
export -> token recovery -> probe -> report -> summary, each skipped when its output is complete.

Every stage writes its own folder under the output directory, so an interrupted job resumes where
it stopped (training from its last checkpoint).
"""

import json
import os
import time

from absl import logging

from dfe_jax.data import ingest_lib
from dfe_jax.formats import dataset_info
from dfe_jax.formats import outputs
from dfe_jax.main_job import summary as summary_lib
from dfe_jax.probing import probe_lib
from dfe_jax.reporting import report_lib
from dfe_jax.synthetic import display_discovery
from dfe_jax.synthetic import synth_lib
from dfe_jax.synthetic import token_recovery
from dfe_jax.tokenizer import export_lib
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib


class Stages:
  """Runs named stages, skipping finished ones, and records how long each took."""

  def __init__(self, job="demo"):
    self.job = job  # Names the job in its log lines.
    self.seconds = {}

  def run(self, name, done_marker, fn):
    if os.path.exists(done_marker):
      logging.info("%s: %s already done (%s)", self.job, name, done_marker)
      self.seconds[name] = 0.0
      return
    logging.info("%s: %s ...", self.job, name)
    start = time.time()
    fn()
    self.seconds[name] = time.time() - start
    logging.info("%s: %s took %.0f s", self.job, name, self.seconds[name])


def train(config, data_dir, workdir):
  """Trains `config` on the shards in `data_dir` into `workdir` (resuming from its checkpoint)."""
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data_dir = data_dir
  train_lib.train_and_evaluate(config, workdir)


def finished_training(workdir, config):
  """The checkpoint folder whose existence says that training `config` in `workdir` finished."""
  return os.path.join(workdir, "checkpoints", str(config.total_steps))


def make_corpus(stages, corpus_dir, shards_dir, num_subjects=48, video_seconds=60.0):
  """The synthetic corpus (default CorpusSpec but for its size) and its subject-normalised
  shards, each made unless complete; returns the manifest path."""
  manifest = os.path.join(corpus_dir, "manifest.csv")
  spec = synth_lib.CorpusSpec(num_subjects=num_subjects, video_seconds=video_seconds)
  stages.run("synth", manifest,
             lambda: synth_lib.write_corpus(spec, corpus_dir, overwrite=True, num_workers=2))
  stages.run("ingest", os.path.join(shards_dir, "dataset.json"),
             lambda: ingest_lib.ingest(manifest, shards_dir, ingest_lib.IngestOptions(
                 normalize="subject", overwrite=True)))
  return manifest


def run_demo(out, rvq_config, continuous_config, probe_config, num_subjects=48,
             video_seconds=60.0):
  """Runs every stage into `out`; returns the summary dict (also written as JSON and Markdown)."""
  paths = {name: os.path.join(out, name) for name in (
      "corpus", "shards", "train", "train_continuous", "tokens", "tokens_continuous",
      "discovery", "probe", "report")}
  stages = Stages()
  manifest = make_corpus(stages, paths["corpus"], paths["shards"], num_subjects, video_seconds)
  stages.run("train", finished_training(paths["train"], rvq_config),
             lambda: train(rvq_config, paths["shards"], paths["train"]))
  stages.run("train_continuous", finished_training(paths["train_continuous"],
                                                    continuous_config),
             lambda: train(continuous_config, paths["shards"], paths["train_continuous"]))
  trained = trained_model.load(paths["train"])
  stages.run("tokenize", os.path.join(paths["tokens"], "tokens_index.csv"),
             lambda: tokenize_lib.tokenize_videos(trained, manifest, paths["tokens"],
                                                  overwrite=True))
  stages.run("tokenize_continuous", os.path.join(paths["tokens_continuous"], "tokens_index.csv"),
             lambda: tokenize_lib.tokenize_videos(
                 trained_model.load(paths["train_continuous"]), manifest,
                 paths["tokens_continuous"], latents=True, overwrite=True))
  model_npz = os.path.join(out, "model.npz")
  stages.run("export", model_npz, lambda: export_lib.export(trained, model_npz, overwrite=True))
  recovery = {}
  stages.seconds["token_recovery"] = _timed(lambda: recovery.update(
      token_recovery.token_recovery_report(paths["tokens"], manifest, trained.info)))
  stages.run("discovery", os.path.join(paths["discovery"], "discovery.json"),
             lambda: display_discovery.write(display_discovery.evaluate(
                 trained, paths["tokens"], manifest, dataset_info.read_video_splits(
                     paths["shards"])), paths["discovery"]))
  probe_config = probe_config.copy_and_resolve_references()
  with probe_config.unlocked():
    probe_config.tokens = paths["tokens"]
    probe_config.manifest = manifest
    probe_config.continuous_tokens = paths["tokens_continuous"]
    probe_config.dataset = os.path.join(paths["shards"], "dataset.json")
  stages.run("probe", os.path.join(paths["probe"], "results.json"),
             lambda: probe_lib.run_probes(probe_config, paths["probe"], overwrite=True))
  stages.run("report", os.path.join(paths["report"], "report.html"),
             lambda: report_lib.write_report(paths["train"], paths["report"],
                                             tokens=paths["tokens"], manifest=manifest,
                                             discovery_dir=paths["discovery"],
                                             probe_dir=paths["probe"], overwrite=True))
  summary = summary_lib.summarize(paths, trained, recovery, stages.seconds)
  with outputs.atomic_open(os.path.join(out, "summary.json")) as f:
    json.dump(summary, f, indent=1)
  with outputs.atomic_open(os.path.join(out, "summary.md")) as f:
    f.write(summary_lib.markdown(summary, paths))
  return summary


def _timed(fn):
  """Seconds `fn()` took."""
  start = time.time()
  fn()
  return time.time() - start
