"""Token recovery on the synthetic corpus: do tokens find the ground-truth facial displays?

Each latent step gets a ground-truth label: the display with the largest mean activation over
the step's frames (synth_lib's `display` [T, G]) when that mean exceeds `threshold`, else
"none". Over valid steps we report the normalised mutual information (NMI, arithmetic) between
the level-0 code and that label (all steps, and steps with an active display), and per-display
precision: each code is mapped to the label it co-occurs with most; a display's precision is
the fraction of steps whose code maps to it that truly show it. The baseline is k-means with K
clusters (K = the codebook size) on the same normalised frames, averaged over each step's
frames, scored the same way, so both sides have the same number of clusters.
"""

import dataclasses

import numpy as np
from sklearn import cluster
from sklearn import metrics

from dfe_jax.data import ingest_lib
from dfe_jax.formats import manifest as manifest_format
from dfe_jax.formats import outputs
from dfe_jax.formats import tokens as tokens_format
from dfe_jax.tokenizer import tokenize_lib


def step_labels(display_TG, frame_start_S, frame_end_S, threshold):
  """Dominant display per latent step [S] (G = none): largest mean activation over its frames."""
  num_displays = display_TG.shape[1]
  cumsum = np.concatenate([np.zeros((1, num_displays)), np.cumsum(display_TG, 0)])
  mean_SG = (cumsum[frame_end_S] - cumsum[frame_start_S]) / np.maximum(
      frame_end_S - frame_start_S, 1)[:, None]
  label = np.argmax(mean_SG, axis=1)
  return np.where(mean_SG.max(1) > threshold, label, num_displays)


def step_means(x_TF, frame_start_S, frame_end_S):
  """Mean frame vector of each latent step [S, F]."""
  cumsum = np.concatenate([np.zeros((1, x_TF.shape[1])), np.cumsum(x_TF, 0, dtype=np.float64)])
  return ((cumsum[frame_end_S] - cumsum[frame_start_S])
          / np.maximum(frame_end_S - frame_start_S, 1)[:, None]).astype(np.float32)


def cluster_scores(cluster_N, label_N, num_displays):
  """NMI (all steps and active-display steps) and per-display precision of a clustering."""
  active = label_N < num_displays
  mapping = {}
  for c in np.unique(cluster_N):
    mapping[c] = np.bincount(label_N[cluster_N == c], minlength=num_displays + 1).argmax()
  predicted = np.array([mapping[c] for c in cluster_N])
  precision = {}
  for g in range(num_displays):
    chosen = predicted == g
    precision[g] = float((label_N[chosen] == g).mean()) if chosen.any() else 0.0
  return {
      "nmi": float(metrics.normalized_mutual_info_score(label_N, cluster_N)),
      "nmi_active": (float(metrics.normalized_mutual_info_score(label_N[active],
                                                                cluster_N[active]))
                     if active.any() else 0.0),
      "precision_by_display": precision,
      "mean_precision": float(np.mean(list(precision.values()))),
  }


@dataclasses.dataclass(frozen=True)
class CorpusSteps:
  """The valid latent steps of a tokenized synthetic corpus, with their ground truth.

  Per step (N): its row in the tokens file, subject, mean display activation [N, G], dominant
  display label, and mean normalised frame [N, F]; per subject, its valid normalised frames.
  """
  rows_N: np.ndarray
  subject_N: np.ndarray
  activity_NG: np.ndarray
  label_N: np.ndarray
  means_NF: np.ndarray
  frames_by_subject: dict


def corpus_steps(tokens, manifest, info, threshold=0.25):
  """Every valid latent step of `tokens` with the corpus's ground truth, normalised as the model
  saw its frames (per subject, like ingest). `threshold` decides the dominant-display label."""
  rows = {r["video_id"]: r for r in manifest_format.read(manifest)}
  by_subject = {}
  for v, vid in enumerate(tokens["video_id"]):
    vid = str(vid)
    if vid not in rows:
      raise ValueError(f"{manifest}: has no video {vid!r} of the tokens")
    by_subject.setdefault(rows[vid]["subject_id"], []).append((v, vid))
  fps = float(info["fps"])
  keep_rows, subjects, activity, labels, means, frames = [], [], [], [], [], {}
  for subject, videos in by_subject.items():
    group, display = [], []
    for v, vid in videos:
      row = rows[vid]
      data = outputs.load_npz(row["path"])
      if "display" not in data:
        raise ValueError(f"{row['path']}: no 'display' array; display recovery needs the "
                         "synthetic corpus (python -m dfe_jax.synth)")
      video = ingest_lib.load_and_resample(row, fps)
      d, _ = ingest_lib.resample(data["display"].astype(np.float32), np.ones(
          len(data["display"]), bool), video["source_fps"], fps)
      group.append(tokenize_lib.VideoInput(vid, subject, video["features"], video["valid"]))
      display.append(d)
    normalised, _ = tokenize_lib.normalize_subject_videos(info, group)
    frames[subject] = np.concatenate([x[g.valid] for x, g in zip(normalised, group)])
    for (v, _), x, d in zip(videos, normalised, display):
      rows_v = slice(int(tokens["offset"][v]), int(tokens["offset"][v + 1]))
      valid = tokens["valid"][rows_v]
      start, end = tokens["frame_start"][rows_v][valid], tokens["frame_end"][rows_v][valid]
      activity.append(step_means(d, start, end))
      labels.append(step_labels(d, start, end, threshold))
      means.append(step_means(x, start, end))
      keep_rows.append(np.arange(rows_v.start, rows_v.stop)[valid])
      subjects.append(np.full(int(valid.sum()), subject, dtype=object))
  return CorpusSteps(np.concatenate(keep_rows), np.concatenate(subjects),
                     np.concatenate(activity), np.concatenate(labels), np.concatenate(means),
                     frames)


def token_recovery_report(tokens_path, manifest, info, codebook_size=None, *, threshold=0.25,
                          seed=0):
  """NMI and per-display precision of the tokens and of the k-means baseline (module doc)."""
  tokens = tokens_format.read(tokens_path)
  k = int(codebook_size or tokens["codebook_size"])
  steps = corpus_steps(tokens, manifest, info, threshold)
  label_N, means_NF = steps.label_N, steps.means_NF
  num_displays = steps.activity_NG.shape[1]
  codes_NL = tokens["codes"][steps.rows_N]
  kmeans = cluster.MiniBatchKMeans(n_clusters=min(k, len(means_NF)), random_state=seed,
                                   batch_size=4096, n_init=3)
  baseline = cluster_scores(kmeans.fit_predict(means_NF), label_N, num_displays)
  levels = {f"level{l}": cluster_scores(codes_NL[:, l], label_N, num_displays)["nmi"]
            for l in range(codes_NL.shape[1])}
  return {
      "num_steps": int(len(label_N)),
      "num_displays": int(num_displays),
      "active_fraction": float((label_N < num_displays).mean()),
      "threshold": threshold,
      "codebook_size": k,
      "tokens": cluster_scores(codes_NL[:, 0], label_N, num_displays),
      "tokens_nmi_by_level": levels,
      "kmeans": baseline,
  }


def format_report(report):
  """A small Markdown table of the report: tokens (level 1) against the k-means baseline."""
  t, b = report["tokens"], report["kmeans"]
  lines = [
      f"Token recovery: {report['num_steps']} valid steps, {report['num_displays']} displays "
      f"({100 * report['active_fraction']:.0f}% of steps show one), K = "
      f"{report['codebook_size']}",
      "",
      "| clusters | NMI | NMI (active steps) | mean per-display precision |",
      "| --- | ---: | ---: | ---: |",
      f"| DFE tokens (level 1) | {t['nmi']:.3f} | {t['nmi_active']:.3f} | "
      f"{t['mean_precision']:.3f} |",
      f"| k-means, K clusters | {b['nmi']:.3f} | {b['nmi_active']:.3f} | "
      f"{b['mean_precision']:.3f} |",
  ]
  return "\n".join(lines)
