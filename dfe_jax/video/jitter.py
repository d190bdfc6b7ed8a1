"""Frame-to-frame jitter of per-frame features: how much tracking noise a video's features carry.

For features x [T, D] and validity v [T], with P = {t : v[t], v[t+1] and both rows finite}:

  jitter = median over t in P of  (1/D) * sum_d |x[t+1, d] - x[t, d]|

in feature units per source frame (so it falls as the frame rate rises), NaN when P is empty.
The median over pairs is the typical frame: blinks and fast movements are a minority of frames,
while landmark noise from a crop that moves with the detector touches every frame. MediaPipe's
single-face tracking of a steady webcam face gives about 0.003 on the 51 blendshapes (README,
"From face videos").
"""

import numpy as np

from dfe_jax.formats import feature_spaces


def frame_jitter(features_TD, valid_T):
  """Median over consecutive valid frame pairs of the mean |Δ| across features (module doc)."""
  x = np.asarray(features_TD, np.float64)
  ok = np.asarray(valid_T, bool) & np.isfinite(x).all(axis=1)
  pairs = ok[1:] & ok[:-1]
  if not pairs.any():
    return float("nan")
  step = np.abs(np.diff(x, axis=0)).mean(axis=1)
  return float(np.median(step[pairs]))


def blendshape_jitter(features_TD, valid_T, feature_names):
  """`frame_jitter` over the `arkit51` blendshape columns only; NaN when the set lacks them."""
  names = [str(n) for n in feature_names]
  if not set(feature_spaces.ARKIT51) <= set(names):
    return float("nan")
  columns = [names.index(n) for n in feature_spaces.ARKIT51]
  return frame_jitter(np.asarray(features_TD)[:, columns], valid_T)
