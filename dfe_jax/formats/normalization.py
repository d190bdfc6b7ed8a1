"""Normalisation statistics: mergeable moment sums, z-scoring and subject centring.

`global`: x -> (x - mean) / std with mean and std over the valid training frames.
`subject`: x -> (x - subject_mean[s]) / std, each subject's mean over its own valid frames
(any split: it is the subject's neutral face, not a label) and `std` over the subject-centred
valid training frames.
"""

import dataclasses

import numpy as np

MODES = ("global", "subject")
_MIN_STD = 1e-6


@dataclasses.dataclass
class Moments:
  """Float64 count, sum and sum of squares of frame vectors; merge by adding."""
  count: float
  total: np.ndarray
  total_sq: np.ndarray

  @classmethod
  def zeros(cls, num_features):
    return cls(0.0, np.zeros(num_features), np.zeros(num_features))

  @classmethod
  def of(cls, x_TD):
    x = x_TD.astype(np.float64)
    return cls(float(len(x)), x.sum(0), (x * x).sum(0))

  def __add__(self, other):
    return Moments(self.count + other.count, self.total + other.total,
                   self.total_sq + other.total_sq)

  def mean(self):
    return self.total / max(self.count, 1.0)

  def std(self):
    var = self.total_sq / max(self.count, 1.0) - self.mean() ** 2
    return np.sqrt(np.maximum(var, _MIN_STD ** 2))

  def to_json(self):
    return {"count": self.count, "total": self.total.tolist(), "total_sq": self.total_sq.tolist()}

  @classmethod
  def from_json(cls, d):
    return cls(float(d["count"]), np.asarray(d["total"]), np.asarray(d["total_sq"]))


def centred_moments(subject_moments, subject_mean):
  """Moments of a subject's frames after removing `subject_mean`, from its raw moments."""
  m = subject_moments
  return Moments(m.count, m.total - m.count * subject_mean,
                 m.total_sq - 2 * subject_mean * m.total + m.count * subject_mean ** 2)


def finalize(mode, train_moments_by_subject, all_moments_by_subject):
  """The `normalization` entry of dataset.json from per-subject moments."""
  if mode not in MODES:
    raise ValueError(f"normalize must be one of {MODES}, got {mode!r}")
  num_features = len(next(iter(all_moments_by_subject.values())).total)
  train = sum(train_moments_by_subject.values(), Moments.zeros(num_features))
  if train.count == 0:
    raise ValueError("the training split has no valid frames to compute statistics from")
  if mode == "global":
    return {"mode": mode, "mean": train.mean().tolist(), "std": train.std().tolist()}
  subject_mean = {s: m.mean() for s, m in all_moments_by_subject.items()}
  centred = sum((centred_moments(m, subject_mean[s]) for s, m in train_moments_by_subject.items()),
                Moments.zeros(num_features))
  return {"mode": mode, "mean": np.zeros(num_features).tolist(),
          "std": centred.std().tolist(),
          "subject_mean": {s: v.tolist() for s, v in sorted(subject_mean.items())}}


def offset_and_scale(stats, subject_id):
  """The (offset [D], scale [D]) that normalise a frame of `subject_id`: (x - offset) / scale."""
  std = np.asarray(stats["std"], np.float32)
  if stats["mode"] == "subject":
    if subject_id not in stats["subject_mean"]:
      raise KeyError(f"subject {subject_id!r} has no mean in the normalisation statistics")
    return np.asarray(stats["subject_mean"][subject_id], np.float32), std
  return np.asarray(stats["mean"], np.float32), std


def normalize_subject_videos(stats, features, valids):
  """One subject's videos normalised as ingest did, the subject mean recomputed from them.

  `features` [T, D] and `valids` [T] per video; returns the normalised videos (zero where
  invalid) and the offset used. Tokenize, token recovery and the probe all normalise this way.
  """
  std = np.asarray(stats["std"], np.float32)
  if stats["mode"] == "subject":
    moments = sum((Moments.of(x[v]) for x, v in zip(features, valids)), Moments.zeros(len(std)))
    offset = moments.mean().astype(np.float32)
  else:
    offset = np.asarray(stats["mean"], np.float32)
  return [np.where(v[:, None], (x - offset) / std, 0.0).astype(np.float32)
          for x, v in zip(features, valids)], offset


def normalize(stats, x_TD, subject_id):
  """Frames of `subject_id` normalised as the model saw them: (x - offset) / scale."""
  offset, scale = offset_and_scale(stats, subject_id)
  return (x_TD - offset) / scale
