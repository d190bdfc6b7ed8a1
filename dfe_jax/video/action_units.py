"""FACS action-unit estimates derived from MediaPipe's ARKit blendshapes (the AU baseline).

These are **blendshape-derived estimates, not a trained AU detector**. No trained AU model
(OpenFace, py-feat, LibreFace) can run offline here, so the probe's "FACS" baseline uses a fixed,
documented mapping from MediaPipe FaceLandmarker blendshape scores (each in [0, 1]) to AU
intensities in [0, 1]. The mapping follows the blendshape→AU assignment that py-feat ships in
`feat/resources/blendshape_region_map.json` and the usual ARKit-to-FACS correspondences; AUs
without a blendshape counterpart (AU23 lip tightener, AU27 mouth stretch, AU43 as distinct from
a blink) are left out rather than guessed. Bilateral AUs average the left and right blendshapes,
so a one-sided movement gives half the intensity; "Left"/"Right" are as MediaPipe names them.

| AU   | FACS name            | formula (blendshape scores)                         |
|------|----------------------|-----------------------------------------------------|
| AU01 | inner brow raiser    | browInnerUp                                         |
| AU02 | outer brow raiser    | mean(browOuterUpLeft, browOuterUpRight)             |
| AU04 | brow lowerer         | mean(browDownLeft, browDownRight)                   |
| AU05 | upper lid raiser     | mean(eyeWideLeft, eyeWideRight)                     |
| AU06 | cheek raiser         | mean(cheekSquintLeft, cheekSquintRight)             |
| AU07 | lid tightener        | mean(eyeSquintLeft, eyeSquintRight)                 |
| AU09 | nose wrinkler        | mean(noseSneerLeft, noseSneerRight)                 |
| AU10 | upper lip raiser     | mean(mouthUpperUpLeft, mouthUpperUpRight)           |
| AU12 | lip corner puller    | mean(mouthSmileLeft, mouthSmileRight)               |
| AU14 | dimpler              | mean(mouthDimpleLeft, mouthDimpleRight)             |
| AU15 | lip corner depressor | mean(mouthFrownLeft, mouthFrownRight)               |
| AU16 | lower lip depressor  | mean(mouthLowerDownLeft, mouthLowerDownRight)       |
| AU17 | chin raiser          | mean(mouthShrugLower, mouthShrugUpper)              |
| AU18 | lip pucker           | mouthPucker                                         |
| AU20 | lip stretcher        | mean(mouthStretchLeft, mouthStretchRight)           |
| AU22 | lip funneler         | mouthFunnel                                         |
| AU24 | lip pressor          | mean(mouthPressLeft, mouthPressRight)               |
| AU25 | lips part            | clip(jawOpen - mouthClose, 0, 1)                    |
| AU26 | jaw drop             | jawOpen                                             |
| AU28 | lip suck             | mean(mouthRollLower, mouthRollUpper)                |
| AU29 | jaw thrust           | jawForward                                          |
| AU30 | jaw sideways         | max(jawLeft, jawRight)                              |
| AD34 | cheek puff           | cheekPuff                                           |
| AU45 | blink                | mean(eyeBlinkLeft, eyeBlinkRight)                   |
| AU61 | eyes turn left       | mean(eyeLookOutLeft, eyeLookInRight)                |
| AU62 | eyes turn right      | mean(eyeLookInLeft, eyeLookOutRight)                |
| AU63 | eyes up              | mean(eyeLookUpLeft, eyeLookUpRight)                 |
| AU64 | eyes down            | mean(eyeLookDownLeft, eyeLookDownRight)             |

AU25 uses ARKit's `mouthClose`, which is the lips-together corrective on an open jaw, so an
open jaw with closed lips does not count as lips apart. AD34 is a FACS action descriptor, kept
under its FACS code.
"""

import numpy as np

from dfe_jax.formats import feature_spaces

# (code, FACS name, combine, blendshapes). `combine` is one of "one", "mean", "max",
# "diff" (first minus second, clipped to [0, 1]); the module docstring's table mirrors this.
MAPPING = (
    ("AU01", "inner brow raiser", "one", ("browInnerUp",)),
    ("AU02", "outer brow raiser", "mean", ("browOuterUpLeft", "browOuterUpRight")),
    ("AU04", "brow lowerer", "mean", ("browDownLeft", "browDownRight")),
    ("AU05", "upper lid raiser", "mean", ("eyeWideLeft", "eyeWideRight")),
    ("AU06", "cheek raiser", "mean", ("cheekSquintLeft", "cheekSquintRight")),
    ("AU07", "lid tightener", "mean", ("eyeSquintLeft", "eyeSquintRight")),
    ("AU09", "nose wrinkler", "mean", ("noseSneerLeft", "noseSneerRight")),
    ("AU10", "upper lip raiser", "mean", ("mouthUpperUpLeft", "mouthUpperUpRight")),
    ("AU12", "lip corner puller", "mean", ("mouthSmileLeft", "mouthSmileRight")),
    ("AU14", "dimpler", "mean", ("mouthDimpleLeft", "mouthDimpleRight")),
    ("AU15", "lip corner depressor", "mean", ("mouthFrownLeft", "mouthFrownRight")),
    ("AU16", "lower lip depressor", "mean", ("mouthLowerDownLeft", "mouthLowerDownRight")),
    ("AU17", "chin raiser", "mean", ("mouthShrugLower", "mouthShrugUpper")),
    ("AU18", "lip pucker", "one", ("mouthPucker",)),
    ("AU20", "lip stretcher", "mean", ("mouthStretchLeft", "mouthStretchRight")),
    ("AU22", "lip funneler", "one", ("mouthFunnel",)),
    ("AU24", "lip pressor", "mean", ("mouthPressLeft", "mouthPressRight")),
    ("AU25", "lips part", "diff", ("jawOpen", "mouthClose")),
    ("AU26", "jaw drop", "one", ("jawOpen",)),
    ("AU28", "lip suck", "mean", ("mouthRollLower", "mouthRollUpper")),
    ("AU29", "jaw thrust", "one", ("jawForward",)),
    ("AU30", "jaw sideways", "max", ("jawLeft", "jawRight")),
    ("AD34", "cheek puff", "one", ("cheekPuff",)),
    ("AU45", "blink", "mean", ("eyeBlinkLeft", "eyeBlinkRight")),
    ("AU61", "eyes turn left", "mean", ("eyeLookOutLeft", "eyeLookInRight")),
    ("AU62", "eyes turn right", "mean", ("eyeLookInLeft", "eyeLookOutRight")),
    ("AU63", "eyes up", "mean", ("eyeLookUpLeft", "eyeLookUpRight")),
    ("AU64", "eyes down", "mean", ("eyeLookDownLeft", "eyeLookDownRight")),
)

AU_NAMES = tuple(code for code, _, _, _ in MAPPING)


def formula(combine, blendshapes):
  """Spells one mapping row as the docstring table writes it."""
  if combine == "one":
    return blendshapes[0]
  if combine == "diff":
    return f"clip({blendshapes[0]} - {blendshapes[1]}, 0, 1)"
  return f"{combine}({', '.join(blendshapes)})"


def from_blendshapes(values, feature_names=feature_spaces.ARKIT51):
  """Maps blendshape scores [..., D] (columns named by `feature_names`) to AUs [..., A].

  Returns `(au, AU_NAMES)` with `au` float32. `feature_names` may hold extra columns (e.g.
  head rotation); every blendshape the mapping uses must be present.
  """
  values = np.asarray(values, np.float32)
  column = {str(name): i for i, name in enumerate(feature_names)}
  missing = sorted({b for _, _, _, bs in MAPPING for b in bs} - column.keys())
  if missing:
    raise ValueError(f"blendshapes missing for the AU mapping: {', '.join(missing)}")
  outputs = []
  for _, _, combine, blendshapes in MAPPING:
    cols = values[..., [column[b] for b in blendshapes]]
    if combine == "one":
      outputs.append(cols[..., 0])
    elif combine == "mean":
      outputs.append(cols.mean(axis=-1))
    elif combine == "max":
      outputs.append(cols.max(axis=-1))
    elif combine == "diff":
      outputs.append(np.clip(cols[..., 0] - cols[..., 1], 0.0, 1.0))
    else:
      raise ValueError(f"unknown combine {combine!r}")
  return np.stack(outputs, axis=-1).astype(np.float32), AU_NAMES
