"""Linear probes of DFE tokens against baselines: the run and its `results.json` / `results.md`.

Entry point: `run_probes(config, output_dir)`. The protocol (folds, models, metrics, tests)
lives in `probe_cv`, the representations in `probe_features`. Never imports the trainer.
"""

import csv
import datetime
import os
import platform
import time

from absl import logging
import numpy as np
import scipy
import sklearn
import threadpoolctl

import dfe_jax
from dfe_jax.formats import filesystem
from dfe_jax.formats import probe_results
from dfe_jax.formats import provenance
from dfe_jax.probing import cross_validation
from dfe_jax.probing import featurize
from dfe_jax.probing import inputs
from dfe_jax.probing import results_table

ProbeInputError = featurize.ProbeInputError
ALL_REPRESENTATIONS = ("dfe", "dfe_per_level", "functionals", "kmeans", "au", "continuous",
                       "chance")



def _as_list(value):
  """Accepts a comma-separated string or a sequence (config fields are overridable either way)."""
  if isinstance(value, str):
    return [v.strip() for v in value.split(",") if v.strip()]
  return [str(v) for v in value]


class _Representation:
  """A per-video matrix for the task's videos, or a per-fold fitter; plus fresh weighting steps."""

  def __init__(self, name, matrix=None, fold_fitter=None, steps=lambda: [], chance=False,
               describe=None):
    self.name, self.matrix, self.fold_fitter = name, matrix, fold_fitter
    self.steps, self.chance, self.describe = steps, chance, describe
    self.num_features = None if matrix is None else int(matrix.shape[1])

  def for_videos(self, videos):
    """The same representation restricted to `videos` (indices into the probe's video list)."""
    if self.fold_fitter is not None:
      fitter = self.fold_fitter
      sub = _Representation(self.name, steps=self.steps,
                            fold_fitter=lambda tr, te: fitter(videos[tr], videos[te]))
      sub.num_features = self.num_features
      return sub
    sub = _Representation(self.name, self.matrix[videos], steps=self.steps, chance=self.chance,
                          describe=self.describe)
    return sub

  def fold_matrices(self, train, test):
    if self.fold_fitter is not None:
      return self.fold_fitter(train, test)
    return self.matrix[train], self.matrix[test]


def protocol(config):
  """How the frame baselines are built, in one sentence for results.json and results.md."""
  if config.get("dataset"):
    return ("Frame baselines (functionals, k-means) use the frames the tokenizer saw: normalised "
            f"with {config.dataset}'s statistics (subject means recomputed per subject when it "
            "is subject-normalised); k-means is fitted once, without labels, on the tokenizer's "
            "training split, as the tokenizer was.")
  return ("Frame baselines use the per-video files as they are; k-means is fitted inside each "
          "outer training fold on z-scored frames, unlike the tokenizer (trained once on its own "
          "training split): set config.dataset to compare on equal terms.")


def build_representations(config, manifest, tokens, token_index, log):
  """Every requested representation over the probe's videos, in the configured order."""
  requested = _as_list(config.representations)
  auto = requested == ["auto"]
  has_paths = "path" in manifest.columns and all(r.get("path") for r in manifest.rows)
  if auto:
    requested = (["dfe"] + (["functionals", "kmeans"] if has_paths else [])
                 + (["au"] if has_paths or config.openface_table else [])
                 + (["continuous"] if config.continuous_tokens else []) + ["chance"])
  unknown = [r for r in requested if r not in ALL_REPRESENTATIONS]
  if unknown:
    raise ProbeInputError(f"config.representations: unknown '{unknown[0]}' (known: auto, "
                          f"{', '.join(ALL_REPRESENTATIONS)})")
  token_rows = [tokens.rows(v) for v in token_index]
  dataset = inputs.read_dataset(config.dataset) if config.get("dataset") else None
  needs_frames = [r for r in requested if r in ("functionals", "kmeans")
                  or (r == "au" and not config.openface_table)]
  videos = None
  if needs_frames:
    if not has_paths:
      raise ProbeInputError(f"{manifest.path}: a 'path' to each per-video feature file is needed "
                            f"for '{needs_frames[0]}'")
    videos = inputs.load_videos(manifest, range(len(manifest.rows)))
    if dataset is not None:
      videos = inputs.normalize_like_tokenizer(manifest, videos, dataset[0])
  au_arrays_missing = videos is not None and any(v.au is None for v in videos)
  if auto and "au" in requested and not config.openface_table and au_arrays_missing:
    requested.remove("au")
    log("representation 'au' skipped: the per-video files have no 'au' arrays and "
        "config.openface_table is empty")
  steps = lambda: featurize.weighting_steps(config.dfe.weighting)
  featurize.weighting_steps(config.dfe.weighting)  # Fails early on a bad name.
  out = {}
  for name in requested:
    if name in ("dfe", "dfe_per_level"):
      vocabulary = "per_level" if name == "dfe_per_level" else config.dfe.vocabulary
      if vocabulary == "auto":
        vocabulary = "shared" if tokens.shared_codebook else "per_level"
      if vocabulary == "shared" and not tokens.shared_codebook:
        raise ProbeInputError(
            f"{tokens.files[0]}: shared_codebook is false, so a shared vocabulary would merge "
            "unrelated codes; set config.dfe.vocabulary='per_level'")
      matrix, describe = featurize.bag_of_words(
          tokens, token_rows, vocabulary, config.dfe.ngram_max, config.dfe.min_video_count)
      out[name] = _Representation(name, matrix, steps=steps, describe=describe)
    elif name == "functionals":
      names = list(videos[0].feature_names)
      matrix, _ = featurize.frame_functionals(videos, names)
      out[name] = _Representation(name, matrix)
    elif name == "kmeans":
      num_codes = config.kmeans.num_codes or tokens.codebook_size
      fit_once_on = None
      if dataset is not None:
        fit_once_on = [i for i, v in enumerate(manifest.video_ids) if dataset[1].get(v) == "train"]
        if not fit_once_on:
          raise ProbeInputError(f"config.dataset={config.dataset}: none of the manifest's videos "
                                "is in its training split")
      kmeans = featurize.KMeansBagOfWords(videos, num_codes, config.kmeans.max_fit_frames,
                                          config.cv.seed, fit_once_on=fit_once_on)
      rep = _Representation(name, steps=steps, fold_fitter=lambda tr, te, k=kmeans: (
          k.rates(tr, tr), k.rates(tr, te)))
      rep.num_features = num_codes
      out[name] = rep
    elif name == "au":
      out[name] = _Representation(name, _au_matrix(config, manifest, videos))
    elif name == "continuous":
      out[name] = _Representation(name, _continuous_matrix(config, manifest))
    elif name == "chance":
      out[name] = _Representation(name, np.zeros((len(manifest.rows), 1)), chance=True)
  for table in _as_list(config.feature_tables):
    name = "table:" + os.path.splitext(os.path.basename(table))[0]
    matrix, _ = featurize.read_feature_table(table, manifest.video_ids)
    out[name] = _Representation(name, matrix)
  for name, rep in out.items():
    if rep.matrix is not None and not np.isfinite(rep.matrix).all():
      bad = manifest.video_ids[int(np.flatnonzero(~np.isfinite(rep.matrix).all(1))[0])]
      raise ProbeInputError(f"representation '{name}': NaN or infinite values for video_id '{bad}'")
    log(f"representation '{name}': {rep.num_features} features")
  return out


def _au_matrix(config, manifest, videos):
  """AU functionals + occurrence rates from an OpenFace CSV table, else from the `au` arrays."""
  rows = []
  if config.openface_table:
    table_path = config.openface_table
    try:
      with open(table_path, newline="") as f:
        reader = csv.DictReader(f)
        table = {r.get("video_id"): r for r in reader}
    except OSError as e:
      raise ProbeInputError(f"{table_path}: cannot read OpenFace table ({e.strerror})") from e
    if not {"video_id", "openface_csv"} <= set(reader.fieldnames or []):
      raise ProbeInputError(f"{table_path}: OpenFace table needs columns video_id, openface_csv")
    for video_id in manifest.video_ids:
      if video_id not in table:
        raise ProbeInputError(f"{table_path}: no OpenFace CSV listed for video_id '{video_id}'")
      csv_path = table[video_id]["openface_csv"]
      if not os.path.isabs(csv_path):
        csv_path = os.path.join(os.path.dirname(table_path), csv_path)
      fps = float(table[video_id].get("fps") or 30.0)
      rows.append(featurize.au_from_openface(csv_path, fps)[0])
    return np.stack(rows)
  for i, video in enumerate(videos):
    if video.au is None:
      raise ProbeInputError(f"{manifest.file_of(i)}: no 'au' array; give config.openface_table "
                            "or drop 'au' from config.representations")
    au, names = video.au.astype(np.float64), list(video.au_names)
    rows.append(featurize.au_features(
        au, names, au >= config.au.occurrence_threshold, names, video.valid, video.fps)[0])
  return np.stack(rows)


def _continuous_matrix(config, manifest):
  """Pooled continuous latents from `config.continuous_tokens`, in manifest order."""
  if not config.continuous_tokens:
    raise ProbeInputError("config.continuous_tokens: needed for the 'continuous' representation")
  latents = featurize.load_tokens(config.continuous_tokens, need_latents=True)
  index = {v: i for i, v in enumerate(latents.video_ids)}
  missing = [v for v in manifest.video_ids if v not in index]
  if missing:
    raise ProbeInputError(f"{latents.files[0]}: no latents for {len(missing)} probed videos, "
                          f"e.g. '{missing[0]}'")
  rows = [latents.rows(index[v]) for v in manifest.video_ids]
  return featurize.pooled_latents(latents, rows)[0]


def top_tokens(representation, task_type, y, groups, config, classes):
  """The DFE columns whose coefficients push each label most, from a model fitted on all videos."""
  num_folds = cross_validation.check_training_fold("top tokens", y, groups, "-", "all", task_type,
                                           config.cv.inner_folds)
  splits = cross_validation.inner_splits(y, groups, task_type, num_folds, config.cv.seed)
  grid = (config.model.logistic_c_grid if task_type == "classification"
          else config.model.ridge_alpha_grid)
  estimator = cross_validation.make_estimator(task_type, representation.steps, grid, splits,
                                      config.model.max_iter, chance=False)
  estimator.fit(representation.matrix, y)
  coef = np.atleast_2d(estimator.model.coef_)
  targets = ([f"{classes[1]}"] if task_type == "classification" and len(classes) == 2 else
             [str(c) for c in classes] if task_type == "classification" else ["higher"])
  out = {}
  for target, weights in zip(targets, coef):
    order = np.argsort(-weights, kind="stable")
    pick = lambda idx: [dict(representation.describe[j], coefficient=float(weights[j]))
                        for j in idx]
    out[target] = {
        "toward": pick([j for j in order if weights[j] > 0][:config.dfe.top_tokens]),
        "against": pick([j for j in order[::-1] if weights[j] < 0][:config.dfe.top_tokens])}
  return out


def run_probes(config, output_dir, overwrite=False):
  """Runs every task × representation under the CV protocol; writes and returns the results."""
  # Thousands of tiny fits: BLAS/OpenMP threads only contend (several times slower on 2 cores).
  with threadpoolctl.threadpool_limits(1), sklearn.config_context(
      assume_finite=True, skip_parameter_validation=True):
    return _run_probes(config, output_dir, overwrite)


def _run_probes(config, output_dir, overwrite):
  start = time.time()
  log = lambda msg: logging.info("%s (%.1f s)", msg, time.time() - start)
  outputs = probe_results.paths(output_dir)
  existing = [p for p in outputs if filesystem.exists(p)]
  if existing and not overwrite:
    raise FileExistsError(f"{existing[0]}: already exists; pass --overwrite to replace it")
  if not config.tokens or not config.manifest:
    raise ProbeInputError("config.tokens and config.manifest: both are required")
  tokens = featurize.load_tokens(config.tokens)
  manifest = inputs.read_manifest(config.manifest)
  if config.subject_labels:
    inputs.merge_subject_labels(manifest, config.subject_labels)
  manifest, token_index, num_without_tokens = inputs.match_tokens(
      manifest, tokens, config.allow_missing_videos)
  empty = sum(int(tokens.valid[tokens.rows(v)].sum()) == 0 for v in token_index)
  if empty:
    logging.warning("%d videos have no valid latent steps; their token rates are all zero", empty)
  task_names = _as_list(config.tasks) or [
      c for c in manifest.columns if c not in inputs.RESERVED_COLUMNS]
  if not task_names:
    raise ProbeInputError(f"{config.manifest}: no label columns to probe (add label columns, "
                          "or per-subject labels with config.subject_labels)")
  declared = dict(item.split(":") for item in _as_list(config.task_types))
  for task in task_names:  # Every label is checked before any video is read.
    inputs.task_labels(manifest, task, declared.get(task))
  representations = build_representations(config, manifest, tokens, token_index, log)
  results = {"tasks": {}, "metrics": {}}
  for task in task_names:
    y_all, present, task_type = inputs.task_labels(manifest, task, declared.get(task))
    videos = np.flatnonzero(present)
    groups = manifest.subject_ids[videos]
    num_dropped = int((~present).sum())
    if num_dropped:
      logging.warning("task '%s': dropped %d videos with a missing label", task, num_dropped)
    classes = np.unique(y_all) if task_type == "classification" else None
    if task_type == "classification" and len(classes) < 2:
      raise cross_validation.ProbeFoldError(
          f"{manifest.path}: label column '{task}' has one class only ({classes[0]!r}) "
          "among labelled videos; nothing to classify")
    label_range = (float(y_all.min()), float(y_all.max())) if task_type == "regression" else None
    task_reps = {n: r.for_videos(videos) for n, r in representations.items()}
    per_rep, folds = cross_validation.cross_validate(task, task_type, y_all, groups, task_reps, config.cv,
                                             config.model, label_range, config.workers, log)
    test_fraction = 1.0 / config.cv.folds
    paired = {}
    if "dfe" in per_rep:
      metric_names = (cross_validation.CLASSIFICATION_METRICS if classes is not None
                      else cross_validation.REGRESSION_METRICS)
      for name in per_rep:
        if name != "dfe":
          paired[name] = {
              m: cross_validation.paired_comparison(per_rep["dfe"]["per_fold"], per_rep[name]["per_fold"],
                                            m, test_fraction)
              for m in metric_names}
    task_result = {
        "type": task_type, "num_videos": int(len(videos)),
        "num_subjects": int(len(np.unique(groups))), "dropped_missing_label": num_dropped,
        "test_subjects_per_fold": folds, "representations": per_rep, "paired_vs_dfe": paired}
    if classes is not None:
      task_result["classes"] = classes.tolist()
      task_result["class_counts"] = {str(c): int((y_all == c).sum()) for c in classes}
    if "dfe" in representations:
      task_result["top_tokens"] = top_tokens(task_reps["dfe"], task_type, y_all, groups, config,
                                             classes)
      if tokens.shared_codebook and config.dfe.vocabulary != "per_level":
        task_result["token_levels"] = _levels_of_top_tokens(task_result["top_tokens"], tokens,
                                                            token_index)
    results["tasks"][task] = task_result
    for name, rep in per_rep.items():
      for metric, summary in rep["metrics"].items():
        results["metrics"][f"probe/{task}/{name}/{metric}"] = summary["mean"]
  results["protocol"] = protocol(config)
  results["data"] = {
      "num_videos": len(manifest.video_ids),
      "num_subjects": int(len(np.unique(manifest.subject_ids))),
      "num_manifest_videos_without_tokens": num_without_tokens,
      "num_videos_without_valid_steps": empty,
      "codebook_size": tokens.codebook_size, "num_levels": tokens.num_levels,
      "shared_codebook": tokens.shared_codebook,
      "representation_features": {n: r.num_features for n, r in representations.items()},
      "sha256": {p: provenance.sha256_of(p) for p in tokens.files + [config.manifest]}}
  results["provenance"] = {
      "config": config.to_dict(), "seeds": [config.cv.seed + r for r in range(config.cv.repeats)],
      "versions": {"dfe_jax": dfe_jax.__version__, "python": platform.python_version(),
                   "numpy": np.__version__, "scipy": scipy.__version__,
                   "sklearn": sklearn.__version__},
      "git_revision": provenance.git_revision(),
      "created": datetime.datetime.now().isoformat(timespec="seconds"),
      "seconds": round(time.time() - start, 1)}
  probe_results.write(output_dir, results, results_table.markdown(results))
  log(f"wrote {outputs[0]} and {outputs[1]}")
  return results


def _levels_of_top_tokens(top, tokens, token_index):
  """For a shared vocabulary: at which levels each reported token occurs (share of its uses)."""
  hist = featurize.level_histogram(tokens, [tokens.rows(v) for v in token_index])
  ids = {t["tokens"][0] for target in top.values() for side in target.values() for t in side
         if len(t["tokens"]) == 1}
  return {str(i): (hist[i] / max(hist[i].sum(), 1)).round(3).tolist() for i in sorted(ids)}

