"""Mergeable frame statistics (count, mean, centred second moment) and the normalisation entry.

Two sets of frames with counts n_a, n_b, means m_a, m_b and centred second moments
M_a = sum (x - m_a)^2, M_b merge as (Chan, Golub and LeVeque, 1979):

  n = n_a + n_b,  d = m_b - m_a,  m = m_a + d n_b / n,  M = M_a + M_b + d^2 n_a n_b / n.

Unlike sums of x and x^2 this never subtracts two large numbers, so the variance keeps float64
accuracy however the frames are split between workers and in whatever order they merge.
"""

import dataclasses

import numpy as np

from dfe_jax.formats import normalization

MIN_STD = 1e-6  # The std floor: a constant feature normalises to finite values.


@dataclasses.dataclass(frozen=True)
class Moments:
  """Float64 count, mean [D] and centred second moment [D] of a set of frame vectors."""
  count: float
  mean: np.ndarray
  m2: np.ndarray

  @classmethod
  def zeros(cls, num_features):
    return cls(0.0, np.zeros(num_features), np.zeros(num_features))

  @classmethod
  def of(cls, x_TD):
    """The moments of the rows of `x_TD`, in float64."""
    x = np.asarray(x_TD, np.float64)
    if not len(x):
      return cls.zeros(x.shape[1])
    mean = x.mean(0)
    return cls(float(len(x)), mean, ((x - mean) ** 2).sum(0))

  def merge(self, other):
    """The moments of both sets of frames (Chan's formula)."""
    if other.count == 0:
      return self
    if self.count == 0:
      return other
    count = self.count + other.count
    delta = other.mean - self.mean
    return Moments(count, self.mean + delta * (other.count / count),
                   self.m2 + other.m2 + delta ** 2 * (self.count * other.count / count))

  def std(self):
    """Population standard deviation, floored at MIN_STD."""
    return np.sqrt(np.maximum(self.m2 / max(self.count, 1.0), MIN_STD ** 2))


def merge_all(moments):
  """Merges an iterable of Moments (None for an empty iterable)."""
  total = None
  for m in moments:
    total = m if total is None else total.merge(m)
  return total


def training_contribution(mode, subject_moments):
  """What one training subject adds to the training split's statistics under `mode`.

  Subjects are split-disjoint, so a training subject's frames are all training frames; in
  `subject` mode they are centred on the subject's own mean, which leaves the second moment as
  it is and moves the mean to zero.
  """
  if mode == "subject":
    return Moments(subject_moments.count, np.zeros_like(subject_moments.mean), subject_moments.m2)
  return subject_moments


def normalization_entry(mode, train, subject_moments):
  """dataset.json's `normalization`: from the merged training contributions (`train`) and,
  for `subject` mode, each subject's moments (valid frames of any split)."""
  if mode not in normalization.MODES:
    raise ValueError(f"normalize must be one of {normalization.MODES}, got {mode!r}")
  if train is None or train.count == 0:
    raise ValueError("the training split has no valid frames to compute statistics from")
  if mode == "global":
    return {"mode": mode, "mean": train.mean.tolist(), "std": train.std().tolist()}
  return {"mode": mode, "mean": np.zeros_like(train.mean).tolist(), "std": train.std().tolist(),
          "subject_mean": {s: m.mean.tolist() for s, m in sorted(subject_moments.items())}}
