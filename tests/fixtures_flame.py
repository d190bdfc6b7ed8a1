"""A small synthetic FLAME-format model (the official arrays, made-up values) for tests.

`write_flame_npz` writes the `.npz` form; `write_flame_pickle` writes the official pickle form,
with arrays wrapped in stand-ins for chumpy's `Ch` (pickled as `chumpy.ch.Ch`, state `{'x': a}`)
and a scipy sparse `J_regressor`, so the chumpy-free reader is tested on the real layout.
"""

import pickle
import sys
import types

import numpy as np
import scipy.sparse

NUM_SHAPE, NUM_EXPR = 300, 10
JAW = 2


def make_flame(seed=0, grid=12):
  """A face-like grid surface: lower third skinned to the jaw joint, the rest to the neck."""
  rng = np.random.default_rng(seed)
  xs, ys = np.meshgrid(np.linspace(-0.08, 0.08, grid), np.linspace(-0.1, 0.1, grid))
  z = 0.05 - 3.0 * (xs ** 2 + ys ** 2)  # A dome facing +z, in metres as FLAME.
  v = np.stack([xs.ravel(), ys.ravel(), z.ravel()], 1)
  faces = []
  for i in range(grid - 1):
    for j in range(grid - 1):
      a = i * grid + j
      faces += [(a, a + 1, a + grid), (a + 1, a + grid + 1, a + grid)]
  num_v = len(v)
  shapedirs = rng.normal(0, 1e-3, (num_v, 3, NUM_SHAPE + NUM_EXPR))
  posedirs = rng.normal(0, 1e-4, (num_v, 3, 36))
  weights = np.zeros((num_v, 5))
  lower = v[:, 1] < -0.03
  weights[lower, JAW] = 1.0
  weights[~lower, 1] = 1.0
  # Joints: root and neck behind the face, jaw hinge just above the lower third, eyes above.
  anchors = [(0, -0.1, 0), (0, -0.08, 0), (0, -0.02, 0.0), (-0.03, 0.04, 0.03), (0.03, 0.04, 0.03)]
  j_regressor = np.zeros((5, num_v))
  for j, anchor in enumerate(anchors):
    # One-hot rows: each joint sits on the template vertex nearest its anchor.
    j_regressor[j, np.argmin(np.linalg.norm(v - np.array(anchor), axis=1))] = 1.0
  kintree = np.array([[4294967295, 0, 1, 1, 1], [0, 1, 2, 3, 4]], np.int64)
  return {"v_template": v, "shapedirs": shapedirs, "posedirs": posedirs,
          "J_regressor": j_regressor, "weights": weights, "kintree_table": kintree,
          "f": np.array(faces, np.int64)}


def write_flame_npz(path, seed=0):
  """Writes the synthetic model as `.npz`; returns the arrays."""
  model = make_flame(seed)
  np.savez(path, **model)
  return model


def write_flame_pickle(path, seed=0):
  """Writes the synthetic model as the official pickle layout (fake chumpy, sparse regressor)."""
  model = make_flame(seed)
  chumpy = types.ModuleType("chumpy")
  ch = types.ModuleType("chumpy.ch")

  class Ch:  # pylint: disable=too-few-public-methods
    def __init__(self, x):
      self.x = x

    def __getstate__(self):
      return {"x": self.x}

  Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
  ch.Ch = Ch
  saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
  sys.modules["chumpy"], sys.modules["chumpy.ch"] = chumpy, ch
  try:
    payload = dict(model, shapedirs=Ch(model["shapedirs"]), v_template=Ch(model["v_template"]),
                   J_regressor=scipy.sparse.csc_matrix(model["J_regressor"]))
    with open(path, "wb") as f:
      pickle.dump(payload, f, protocol=2)
  finally:
    for k, module in saved.items():
      if module is None:
        sys.modules.pop(k, None)
      else:
        sys.modules[k] = module
  return model
