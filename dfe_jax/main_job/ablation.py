"""The tokenizer ablation: each config variant x seed trained, tokenized and scored for display
discovery on the main job's synthetic corpus, in one table beside the classical baselines.

Under `output_dir`: `corpus/` and `shards/` (the main job's: default CorpusSpec, subject
normalisation; made unless complete), `<variant>/seed<k>/` with `train/`, `tokens/`,
`discovery/` and `run.json` (the row; a run with it is skipped, so an interrupted ablation
resumes, training from its last checkpoint), then `ablation.json` and `ablation.md`.
"""

import json
import math
import os
import time

from absl import logging
import numpy as np

from dfe_jax.formats import dataset_info
from dfe_jax.formats import metrics_log
from dfe_jax.formats import outputs
from dfe_jax.formats import tokens as tokens_format
from dfe_jax.main_job import stages as stages_lib
from dfe_jax.synthetic import display_discovery
from dfe_jax.tokenizer import code_effects
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model

TOKENS = display_discovery.TOKENS
MIN_RECON_COSINE = 0.93  # A variant is a candidate default only if it reconstructs this well.
BASELINES = ("kmeans", "residual_kmeans", "pca", "nmf_split_sign", "dict_learning", "ica",
             "ica_oracle")


def run_ablation(output_dir, variants, seeds=(0,), *, num_subjects=48, video_seconds=60.0):
  """Runs every (name, description, config) of `variants` for every seed; returns the result
  dict (also written as `ablation.json` and `ablation.md`)."""
  stages = stages_lib.Stages("ablate")
  shards = os.path.join(output_dir, "shards")
  manifest = stages_lib.make_corpus(stages, os.path.join(output_dir, "corpus"), shards,
                                    num_subjects, video_seconds)
  split_of = dataset_info.read_video_splits(shards)
  runs = []
  for name, description, config in variants:
    for seed in seeds:
      run_dir = os.path.join(output_dir, name, f"seed{seed}")
      runs.append(run_variant(name, description, config, seed, run_dir, shards, manifest,
                              split_of))
  result = {"runs": runs, "seeds": list(seeds),
            "corpus": {"num_subjects": num_subjects, "video_seconds": video_seconds}}
  with outputs.atomic_open(os.path.join(output_dir, "ablation.json")) as f:
    json.dump(result, f, indent=1)
  with outputs.atomic_open(os.path.join(output_dir, "ablation.md")) as f:
    f.write(markdown(result) + "\n")
  return result


def run_variant(name, description, config, seed, run_dir, shards, manifest, split_of):
  """Trains, tokenizes and scores one variant with one seed; returns (and writes) its row."""
  row_path = os.path.join(run_dir, "run.json")
  if os.path.exists(row_path):
    logging.info("ablate: %s seed %d already done (%s)", name, seed, row_path)
    with open(row_path) as f:
      row = json.load(f)
    if "non_additivity" not in row:  # A row from before the measure: add it.
      row["non_additivity"] = code_effects.non_additivity(
          trained_model.load(os.path.join(run_dir, "train")),
          tokens_format.read(os.path.join(run_dir, "tokens"))["codes"], seed=seed)
      with outputs.atomic_open(row_path) as f:
        json.dump(row, f, indent=1)
    return row
  config = config.copy_and_resolve_references()
  with config.unlocked():
    config.seed = seed
  paths = {k: os.path.join(run_dir, k) for k in ("train", "tokens", "discovery")}
  stages = stages_lib.Stages("ablate")
  start = time.time()
  stages.run(f"{name} seed {seed}: train", stages_lib.finished_training(paths["train"], config),
             lambda: stages_lib.train(config, shards, paths["train"]))
  trained = trained_model.load(paths["train"])
  stages.run(f"{name} seed {seed}: tokenize",
             os.path.join(paths["tokens"], "tokens_index.csv"),
             lambda: tokenize_lib.tokenize_videos(trained, manifest, paths["tokens"],
                                                  overwrite=True))
  discovery_json = os.path.join(paths["discovery"], "discovery.json")
  stages.run(f"{name} seed {seed}: discovery", discovery_json,
             lambda: display_discovery.write(display_discovery.evaluate(
                 trained, paths["tokens"], manifest, split_of, seed=seed), paths["discovery"]))
  discovery = display_discovery.read(discovery_json)
  row = {"variant": name, "description": description, "seed": seed,
         "seconds": time.time() - start, **training_metrics(paths["train"]),
         "non_additivity": code_effects.non_additivity(
             trained, tokens_format.read(paths["tokens"])["codes"], seed=seed),
         **discovery_row(discovery)}
  with outputs.atomic_open(row_path) as f:
    json.dump(row, f, indent=1)
  return row


def training_metrics(workdir):
  """Held-out reconstruction cosine and code usage per level (the last evaluation) and the last
  logged regulariser values, from `metrics.jsonl`."""
  last = {}
  for row in metrics_log.read(workdir):
    last.update(row)  # Later rows win: the last value of every metric.
  levels = sorted(int(k.split("/")[2][5:]) for k in last
                  if k.startswith("eval/vq/level") and k.endswith("/usage"))
  def regulariser(term):
    keys = [k for k in last if k.endswith(f"loss/{term}") and not k.startswith("eval/")]
    return last[keys[0]] if keys else None
  return {"recon_cosine": last.get("eval/recon_cosine"),
          "usage_by_level": [last[f"eval/vq/level{l}/usage"] for l in levels],
          "ortho_loss": regulariser("ortho"), "sparsity_loss": regulariser("sparsity")}


def discovery_row(discovery):
  """The tokens' dictionary and step-level recovery, and the same-budget baselines beside."""
  tokens = discovery["dictionary"][TOKENS]
  steps = discovery["steps"]["methods"]
  return {
      "num_atoms": tokens["num_atoms"], "mean": tokens["mean"], "min": tokens["min"],
      "num_found": tokens["num_found"], "num_displays": tokens["num_displays"],
      "purity": tokens["purity"], "null_mean": (tokens["null"] or {}).get("mean"),
      "beats_null": tokens["beats_null"],
      "step_auroc": steps[TOKENS]["macro_auroc"],
      "step_auroc_residual_kmeans": steps["residual k-means"]["macro_auroc"],
      "step_auroc_raw_means": steps["raw step means"]["macro_auroc"],
      "multi_display_fraction": discovery["steps"]["multi_display_fraction"],
      "baselines": {name: {k: discovery["dictionary"][name][k] for k in (
          "num_atoms", "mean", "min", "num_found", "purity", "beats_null")} | {
              "null_mean": (discovery["dictionary"][name]["null"] or {}).get("mean")}
                    for name in BASELINES if name in discovery["dictionary"]},
  }


def _fmt(value, spec=".3f"):
  return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(
      value, spec)


def recommend(runs, min_recon_cosine=MIN_RECON_COSINE):
  """The variant with the best mean best cosine (seeds averaged; ties: step AUROC) among those
  whose mean held-out reconstruction cosine reaches `min_recon_cosine`, or None."""
  by_variant = {}
  for r in runs:
    by_variant.setdefault(r["variant"], []).append(r)
  eligible = {v: rs for v, rs in by_variant.items()
              if np.mean([r["recon_cosine"] for r in rs]) >= min_recon_cosine}
  if not eligible:
    return None
  return max(eligible, key=lambda v: (np.mean([r["mean"] for r in eligible[v]]),
                                      np.mean([r["step_auroc"] for r in eligible[v]])))


def markdown(result):
  """The ablation table, the seed means, the baselines beside, and the recommendation."""
  runs = result["runs"]
  lines = [
      "| variant | seed | held-out recon cos | usage by level | non-additivity | token atoms | "
      "mean best cos | "
      "min | found ≥ 0.9 | purity | null mean | beats null | step AUROC tokens | "
      "step AUROC res. k-means | step AUROC raw means | minutes |",
      "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
  for r in runs:
    usage = " ".join(f"{u:.2f}" for u in r["usage_by_level"])
    lines.append(
        f"| {r['variant']} | {r['seed']} | {_fmt(r['recon_cosine'])} | {usage} | "
        f"{_fmt(r.get('non_additivity'))} | {r['num_atoms']} | {r['mean']:.3f} | "
        f"{r['min']:.3f} | "
        f"{r['num_found']}/{r['num_displays']} | {r['purity']:.3f} | {_fmt(r['null_mean'])} | "
        f"{'yes' if r['beats_null'] else 'no'} | {_fmt(r['step_auroc'])} | "
        f"{_fmt(r['step_auroc_residual_kmeans'])} | {_fmt(r['step_auroc_raw_means'])} | "
        f"{r['seconds'] / 60:.1f} |")
  lines += ["", "Variants: " + "; ".join(
      f"`{name}` {desc}" for name, desc in dict.fromkeys(
          (r["variant"], r["description"]) for r in runs))]
  multi_seed = [v for v in dict.fromkeys(r["variant"] for r in runs)
                if sum(r["variant"] == v for r in runs) > 1]
  if multi_seed:
    lines += ["", "Seed means ± standard deviation:", "",
              "| variant | seeds | held-out recon cos | mean best cos | found ≥ 0.9 | "
              "step AUROC tokens |", "|---|---:|---:|---:|---:|---:|"]
    for v in multi_seed:
      rs = [r for r in runs if r["variant"] == v]
      cell = lambda key: (f"{np.mean([r[key] for r in rs]):.3f} ± "
                          f"{np.std([r[key] for r in rs]):.3f}")
      lines.append(f"| {v} | {len(rs)} | {cell('recon_cosine')} | {cell('mean')} | "
                   f"{np.mean([r['num_found'] for r in rs]):.1f} | {cell('step_auroc')} |")
  reference = runs[0]
  lines += ["", f"Classical baselines on the same normalised training frames (fitted beside "
            f"`{reference['variant']}` seed {reference['seed']}: k-means with its K, residual "
            "k-means with its L × K budget; PCA, NMF, dictionary learning and FastICA with the "
            "count rule's components; FastICA oracle told G), each beside its random-frame null:",
            "", "| method | atoms | mean best cos | min | found ≥ 0.9 | purity | null mean | "
            "beats null |", "|---|---:|---:|---:|---:|---:|---:|---|"]
  for name, b in reference["baselines"].items():
    lines.append(f"| {name} | {b['num_atoms']} | {b['mean']:.3f} | {b['min']:.3f} | "
                 f"{b['num_found']}/{reference['num_displays']} | {b['purity']:.3f} | "
                 f"{_fmt(b['null_mean'])} | {'yes' if b['beats_null'] else 'no'} |")
  best = recommend(runs)
  lines += ["", (f"Best display discovery at held-out reconstruction cosine ≥ "
                 f"{MIN_RECON_COSINE}: `{best}`." if best else
                 f"No variant reaches held-out reconstruction cosine {MIN_RECON_COSINE}.")]
  return "\n".join(lines)
