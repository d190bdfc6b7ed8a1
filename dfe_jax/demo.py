"""The main job, end to end on the built-in synthetic corpus.

  python -m dfe_jax.demo --output_dir=runs/demo

synth -> ingest (subject normalisation: each subject's neutral face removed) -> train
configs/rvq.py:demo (and configs/continuous.py:demo, the probes'
no-discretisation baseline) -> tokenize -> export -> token recovery -> probe -> report, then
`summary.md`. Every stage writes its own folder under `--output_dir` and is skipped when its
output is already complete, so an interrupted job resumes where it stopped (training resumes
from its last checkpoint).
"""

import json
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging
import jax
from ml_collections import config_flags

from dfe_jax import export_lib
from dfe_jax import ingest_lib
from dfe_jax import outputs
from dfe_jax import probe_lib
from dfe_jax import report_lib
from dfe_jax import synth_lib
from dfe_jax import token_recovery
from dfe_jax import tokenize_lib
from dfe_jax import train_lib
from dfe_jax import trained_model

_CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
_OUTPUT_DIR = flags.DEFINE_string("output_dir", "runs/demo", "Where every stage writes.")
_RVQ = config_flags.DEFINE_config_file("rvq_config", os.path.join(_CONFIGS, "rvq.py") + ":demo",
                                       "The tokenizer's training config.")
_CONTINUOUS = config_flags.DEFINE_config_file(
    "continuous_config", os.path.join(_CONFIGS, "continuous.py") + ":demo",
    "The continuous baseline's training config.")
_PROBE = config_flags.DEFINE_config_file("probe_config", os.path.join(_CONFIGS, "probe.py"),
                                         "The probe config.")
_NUM_SUBJECTS = flags.DEFINE_integer("num_subjects", 48, "Subjects in the synthetic corpus.")
_VIDEO_SECONDS = flags.DEFINE_float("video_seconds", 60.0, "Seconds per synthetic video.")


class _Stages:
  """Runs named stages, skipping finished ones, and records how long each took."""

  def __init__(self):
    self.seconds = {}

  def run(self, name, done_marker, fn):
    if os.path.exists(done_marker):
      logging.info("demo: %s already done (%s)", name, done_marker)
      self.seconds[name] = 0.0
      return
    logging.info("demo: %s ...", name)
    start = time.time()
    fn()
    self.seconds[name] = time.time() - start
    logging.info("demo: %s took %.0f s", name, self.seconds[name])


def _train(config, data_dir, workdir):
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.data_dir = data_dir
  train_lib.train_and_evaluate(config, workdir)


def _finished_training(workdir, config):
  return os.path.join(workdir, "checkpoints", str(config.total_steps))


def run_demo(out, rvq_config, continuous_config, probe_config, num_subjects=48,
             video_seconds=60.0):
  """Runs every stage into `out`; returns the summary dict (also written as JSON and Markdown)."""
  paths = {name: os.path.join(out, name) for name in (
      "corpus", "shards", "train", "train_continuous", "tokens", "tokens_continuous",
      "probe", "report")}
  manifest = os.path.join(paths["corpus"], "manifest.csv")
  stages = _Stages()
  spec = synth_lib.CorpusSpec(num_subjects=num_subjects, video_seconds=video_seconds)
  stages.run("synth", manifest,
             lambda: synth_lib.write_corpus(spec, paths["corpus"], overwrite=True, num_workers=2))
  stages.run("ingest", os.path.join(paths["shards"], "dataset.json"),
             lambda: ingest_lib.ingest(manifest, paths["shards"], ingest_lib.IngestOptions(
                 normalize="subject", overwrite=True)))
  stages.run("train", _finished_training(paths["train"], rvq_config),
             lambda: _train(rvq_config, paths["shards"], paths["train"]))
  stages.run("train_continuous", _finished_training(paths["train_continuous"],
                                                    continuous_config),
             lambda: _train(continuous_config, paths["shards"], paths["train_continuous"]))
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
  probe_config = probe_config.copy_and_resolve_references()
  with probe_config.unlocked():
    probe_config.tokens = paths["tokens"]
    probe_config.manifest = manifest
    probe_config.continuous_tokens = paths["tokens_continuous"]
  stages.run("probe", os.path.join(paths["probe"], "results.json"),
             lambda: probe_lib.run_probes(probe_config, paths["probe"], overwrite=True))
  stages.run("report", os.path.join(paths["report"], "report.html"),
             lambda: report_lib.write_report(paths["train"], paths["report"],
                                             tokens=paths["tokens"], manifest=manifest,
                                             overwrite=True))
  summary = _summary(paths, trained, recovery, stages.seconds)
  with outputs.atomic_open(os.path.join(out, "summary.json")) as f:
    json.dump(summary, f, indent=1)
  with outputs.atomic_open(os.path.join(out, "summary.md")) as f:
    f.write(summary_markdown(summary, paths))
  return summary


def _timed(fn):
  start = time.time()
  fn()
  return time.time() - start


def _last_eval(workdir):
  evals = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))
           if "eval/recon_cosine" in l]
  return evals[-1]


def _summary(paths, trained, recovery, seconds):
  final = _last_eval(paths["train"])
  levels = trained.config.model.quantizer.num_levels
  with open(os.path.join(paths["probe"], "results.json")) as f:
    probe = json.load(f)
  cosine = final["eval/recon_cosine"]
  return {
      "heldout_recon_cosine": cosine,
      "heldout_recon_mse": final["eval/recon_mse"],
      "meets_cosine_target": cosine >= 0.9,
      "usage_by_level": [final.get(f"eval/vq/level{l}/usage") for l in range(levels)],
      "perplexity_by_level": [final.get(f"eval/vq/level{l}/perplexity") for l in range(levels)],
      "prefix_mse": [final.get(f"eval/recon/prefix{l + 1}_mse") for l in range(levels)],
      "token_recovery": recovery,
      "beats_kmeans_recovery": recovery["tokens"]["nmi"] > recovery["kmeans"]["nmi"],
      "probe_metrics": probe.get("metrics", {}),
      "seconds": seconds,
      "total_seconds": sum(seconds.values()),
  }


def summary_markdown(summary, paths):
  """The short summary the job prints: reconstruction, usage, recovery, probe table."""
  levels = len(summary["usage_by_level"])
  verdict = ("meets" if summary["meets_cosine_target"] else "FALLS SHORT of")
  lines = [
      "# dfe_jax main job: summary", "",
      f"Held-out (val split) reconstruction cosine similarity: "
      f"**{summary['heldout_recon_cosine']:.3f}** ({verdict} the 0.9 target); MSE "
      f"{summary['heldout_recon_mse']:.4f} on z-scored features.", "",
      "| level | usage | perplexity | recon MSE with levels 1..l |", "| ---: | ---: | ---: | ---: |",
  ]
  for l in range(levels):
    lines.append(f"| {l} | {summary['usage_by_level'][l]:.3f} | "
                 f"{summary['perplexity_by_level'][l]:.1f} | {summary['prefix_mse'][l]:.4f} |")
  lines += ["", token_recovery.format_report(summary["token_recovery"]), "",
            "Tokens " + ("beat" if summary["beats_kmeans_recovery"] else "do NOT beat") +
            " the k-means baseline at recovering the ground-truth displays (NMI).", ""]
  with open(os.path.join(paths["probe"], "results.md")) as f:
    lines += ["## Probes", "", f.read(), ""]
  lines += [f"Report: {os.path.join(paths['report'], 'report.html')}", "",
            "Stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["seconds"].items())
            + f"; total {summary['total_seconds']:.0f} s"]
  return "\n".join(lines) + "\n"


def main(argv):
  del argv
  logging.info("demo: JAX on %d %s device(s)", jax.device_count(), jax.default_backend())
  try:
    run_demo(_OUTPUT_DIR.value, _RVQ.value, _CONTINUOUS.value, _PROBE.value,
             _NUM_SUBJECTS.value, _VIDEO_SECONDS.value)
  except (ValueError, FileNotFoundError, FileExistsError) as e:
    sys.exit(f"demo: error: {e}")
  with open(os.path.join(_OUTPUT_DIR.value, "summary.md")) as f:
    print(f.read())


def run():
  app.run(main)


if __name__ == "__main__":
  run()
