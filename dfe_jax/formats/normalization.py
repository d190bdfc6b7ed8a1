"""Normalisation: z-scoring and subject centring with dataset.json's statistics.

`global`: x -> (x - mean) / std with mean and std over the valid training frames.
`subject`: x -> (x - subject_mean[s]) / std, each subject's mean over its own valid frames
(any split: it is the subject's neutral face, not a label) and `std` over the subject-centred
valid training frames. Ingest computes the statistics (data/moments.py, a mergeable combiner).
"""

import numpy as np

MODES = ("global", "subject")


def _scale(stats):
  """The scale [D] of every frame: the training split's std."""
  return np.asarray(stats["std"], np.float32)


def _offset(stats, subject_id):
  """The offset [D] of `subject_id`'s frames: its own mean in `subject` mode, else the mean."""
  if stats["mode"] == "subject":
    if subject_id not in stats["subject_mean"]:
      raise KeyError(f"subject {subject_id!r} has no mean in the normalisation statistics")
    return np.asarray(stats["subject_mean"][subject_id], np.float32)
  return np.asarray(stats["mean"], np.float32)


def offset_and_scale(stats, subject_id):
  """The (offset [D], scale [D]) that normalise a frame of `subject_id`: (x - offset) / scale."""
  return _offset(stats, subject_id), _scale(stats)


def offset_table(stats):
  """The statistics as a table to look rows up in: (subject_ids, offset_ND, scale_D), float32.

  Frames of `subject_ids[i]` normalise as (x - offset_ND[i]) / scale_D. In `global` mode
  `subject_ids` is None and the one row serves every subject.
  """
  scale = _scale(stats)
  if stats["mode"] != "subject":
    return None, _offset(stats, None)[None], scale
  subject_ids = sorted(stats["subject_mean"])
  offsets = np.zeros((len(subject_ids), len(scale)), np.float32)
  for i, s in enumerate(subject_ids):
    offsets[i] = _offset(stats, s)
  return subject_ids, offsets, scale


def normalize_subject_videos(stats, features, valids):
  """One subject's videos normalised as ingest did, the subject mean recomputed from them.

  `features` [T, D] and `valids` [T] per video; returns the normalised videos (zero where
  invalid) and the offset used. Tokenize, token recovery and the probe all normalise this way.
  """
  std = _scale(stats)
  if stats["mode"] == "subject":
    # float64 sums per video, then over videos: the subject's mean however its videos are cut.
    total = sum((x[v].astype(np.float64).sum(0) for x, v in zip(features, valids)),
                np.zeros(len(std)))
    count = sum(int(v.sum()) for v in valids)
    offset = (total / max(count, 1)).astype(np.float32)
  else:
    offset = _offset(stats, None)
  return [np.where(v[:, None], (x - offset) / std, 0.0).astype(np.float32)
          for x, v in zip(features, valids)], offset


def normalize(stats, x_TD, subject_id):
  """Frames of `subject_id` normalised as the model saw them: (x - offset) / scale."""
  offset, scale = offset_and_scale(stats, subject_id)
  return (x_TD - offset) / scale
