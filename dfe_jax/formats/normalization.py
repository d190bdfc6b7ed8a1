"""Normalisation: z-scoring and subject centring with dataset.json's statistics.

`global`: x -> (x - mean) / std with mean and std over the valid training frames.
`subject`: x -> (x - subject_mean[s]) / std, each subject's mean over its own valid frames
(any split: it is the subject's neutral face, not a label) and `std` over the subject-centred
valid training frames. Ingest computes the statistics (data/moments.py, a mergeable combiner).
"""

import numpy as np

MODES = ("global", "subject")


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
    # float64 sums per video, then over videos: the subject's mean however its videos are cut.
    total = sum((x[v].astype(np.float64).sum(0) for x, v in zip(features, valids)),
                np.zeros(len(std)))
    count = sum(int(v.sum()) for v in valids)
    offset = (total / max(count, 1)).astype(np.float32)
  else:
    offset = np.asarray(stats["mean"], np.float32)
  return [np.where(v[:, None], (x - offset) / std, 0.0).astype(np.float32)
          for x, v in zip(features, valids)], offset


def normalize(stats, x_TD, subject_id):
  """Frames of `subject_id` normalised as the model saw them: (x - offset) / scale."""
  offset, scale = offset_and_scale(stats, subject_id)
  return (x_TD - offset) / scale
