"""Which face to follow across frames, and head angles: pure geometry for the video front end.

It matters when FaceLandmarker reports several faces per frame (`--max_faces` > 1). `follow`
names the person: `largest` considers every face, `left` / `right` only faces whose box centre
lies in that half of the frame (one seat of a side-by-side interview; frames where that seat is
empty stay empty rather than taking the other person). Among those, the first frame picks the
largest (landmark bounding-box area); later frames follow that face by bounding-box IoU with its
last box, then by centroid distance, and pick the largest again only when neither matches.
"""

import math

import numpy as np

# Below this IoU with the tracked box a face counts as someone else, unless its centre is within
# half the tracked box's diagonal (fast motion can drop IoU while the face is still the same).
MIN_TRACK_IOU = 0.3
MAX_CENTRE_SHIFT = 0.5
FOLLOW = ("largest", "left", "right")


def face_box(points_xy):
  """Returns the (x0, y0, x1, y1) bounding box of landmark points [N, 2]."""
  lo, hi = points_xy.min(axis=0), points_xy.max(axis=0)
  return (float(lo[0]), float(lo[1]), float(hi[0]), float(hi[1]))


def _area(box):
  return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def iou(a, b):
  """Intersection over union of two (x0, y0, x1, y1) boxes."""
  inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
  union = _area(a) + _area(b) - inter
  return inter / union if union > 0 else 0.0


def faces_on_side(boxes, follow, width):
  """Indices of the `boxes` that `follow` allows in a frame `width` wide (module doc)."""
  if follow not in FOLLOW:
    raise ValueError(f"follow={follow!r}: expected one of {', '.join(FOLLOW)}")
  if follow == "largest":
    return list(range(len(boxes)))
  left = [(b[0] + b[2]) / 2 < width / 2 for b in boxes]
  return [i for i, l in enumerate(left) if l == (follow == "left")]


def select_face(boxes, tracked):
  """Index of the face to keep among `boxes` given the tracked box (None: none yet)."""
  if not boxes:
    return None
  largest = max(range(len(boxes)), key=lambda i: _area(boxes[i]))
  if tracked is None:
    return largest
  overlaps = [iou(box, tracked) for box in boxes]
  best = int(np.argmax(overlaps))
  if overlaps[best] >= MIN_TRACK_IOU:
    return best
  centre = np.array([(tracked[0] + tracked[2]) / 2, (tracked[1] + tracked[3]) / 2])
  shifts = [np.linalg.norm(np.array([(b[0] + b[2]) / 2, (b[1] + b[3]) / 2]) - centre)
            for b in boxes]
  nearest = int(np.argmin(shifts))
  diagonal = math.hypot(tracked[2] - tracked[0], tracked[3] - tracked[1])
  if shifts[nearest] <= MAX_CENTRE_SHIFT * diagonal:
    return nearest
  return largest


def head_rotation(matrix):
  """(pitch, yaw, roll) in radians from a 4x4 facial transformation matrix.

  The rotation is R = Rz(roll) @ Ry(yaw) @ Rx(pitch) in MediaPipe's canonical face frame
  (x to the face's side, y up, z towards the camera); scale is divided out first.
  """
  rot = np.asarray(matrix, np.float64)[:3, :3]
  rot = rot / np.linalg.norm(rot, axis=0, keepdims=True)
  pitch = math.atan2(rot[2, 1], rot[2, 2])
  yaw = math.atan2(-rot[2, 0], math.hypot(rot[2, 1], rot[2, 2]))
  roll = math.atan2(rot[1, 0], rot[0, 0])
  return pitch, yaw, roll
