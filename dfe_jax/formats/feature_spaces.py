"""The named feature spaces of the data contract (DESIGN.md, "Feature sets")."""

import re

FLAME53 = tuple([f"exp_{i:02d}" for i in range(50)] + [f"jaw_{i}" for i in range(3)])

# MediaPipe FaceLandmarker's blendshape categories, in its output order, without `_neutral`.
ARKIT51 = (
    "browDownLeft", "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight",
    "cheekPuff", "cheekSquintLeft", "cheekSquintRight", "eyeBlinkLeft", "eyeBlinkRight",
    "eyeLookDownLeft", "eyeLookDownRight", "eyeLookInLeft", "eyeLookInRight",
    "eyeLookOutLeft", "eyeLookOutRight", "eyeLookUpLeft", "eyeLookUpRight",
    "eyeSquintLeft", "eyeSquintRight", "eyeWideLeft", "eyeWideRight", "jawForward",
    "jawLeft", "jawOpen", "jawRight", "mouthClose", "mouthDimpleLeft", "mouthDimpleRight",
    "mouthFrownLeft", "mouthFrownRight", "mouthFunnel", "mouthLeft", "mouthLowerDownLeft",
    "mouthLowerDownRight", "mouthPressLeft", "mouthPressRight", "mouthPucker", "mouthRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper",
    "mouthSmileLeft", "mouthSmileRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthUpperUpLeft", "mouthUpperUpRight", "noseSneerLeft", "noseSneerRight",
)

SPACES = {"flame53": FLAME53, "arkit51": ARKIT51}


def space_of(feature_names):
  """Names the feature space that `feature_names` spell exactly, else `custom`."""
  names = tuple(str(n) for n in feature_names)
  for space, space_names in SPACES.items():
    if names == space_names:
      return space
  return "custom"


def feature_groups(feature_names):
  """Groups feature indices by name prefix (`exp`, `jaw`, `brow`, `mouth`, ...) for breakdowns.

  The prefix is what comes before the first `_` (`exp_07` -> `exp`) or, for camelCase names,
  before the first capital (`mouthSmileLeft` -> `mouth`).
  """
  groups = {}
  for i, name in enumerate(str(n) for n in feature_names):
    prefix = re.split(r"_|(?=[A-Z])", name, maxsplit=1)[0] or name
    groups.setdefault(prefix, []).append(i)
  return groups
