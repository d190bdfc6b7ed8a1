"""Faces for tokens: ICT blendshape mesh (ARKit names) and FLAME meshes, drawn as heat maps.

A token's effect is a vector over the expression features. For `arkit51` input it becomes a
deformed ICT face (neutral + sum_i w_i * delta_i); for `flame53` input with a user-supplied FLAME
model it becomes the FLAME template moved by the expression basis and by the jaw rotation through
linear blend skinning. Either way the drawing is the deformed mesh, shaded, with each vertex
coloured by how far it moved.

The rasteriser is a small NumPy z-buffer (orthographic front view, Gouraud shading): matplotlib's
polygon collections take about a second per 18k-triangle face, this takes a few milliseconds, so
dozens of tokens draw in seconds. matplotlib only shows the resulting images.
"""

import io
import os
import pickle

import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.formats import filesystem
from dfe_jax.formats import outputs

ICT_ASSET = os.path.join(os.path.dirname(os.path.dirname(__file__)), "assets", "ict_face_arkit.npz")
FLAME_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")
FLAME_NUM_SHAPE = 300  # The official FLAME models put 300 identity components before expression.
FLAME_JAW_JOINT = 2    # Joints: global, neck, jaw, left eye, right eye.


class Mesh:
  """A neutral mesh and a linear map from a feature vector to vertex offsets."""

  def __init__(self, neutral_V3, triangles_F3, displace):
    self.neutral = np.asarray(neutral_V3, np.float32)
    self.triangles = np.asarray(triangles_F3, np.int64)
    self.displace = displace  # callable: effect [D] (raw feature units) -> offsets [V, 3]


def ict_name(arkit_name):
  """The ICT blendshapes that one MediaPipe/ARKit name drives (both sides for bilateral ones)."""
  if arkit_name in ("browInnerUp", "cheekPuff"):
    return (arkit_name + "_L", arkit_name + "_R")
  for side, suffix in (("Left", "_L"), ("Right", "_R")):
    if arkit_name.endswith(side) and arkit_name not in ("jawLeft", "jawRight", "mouthLeft",
                                                         "mouthRight"):
      return (arkit_name[:-len(side)] + suffix,)
  return (arkit_name,)


def ict_mesh(feature_names, path=ICT_ASSET):
  """The ICT face driven by ARKit-named features; unknown names are ignored (e.g. head pose)."""
  with np.load(path) as data:
    neutral, triangles = data["neutral"], data["triangles"]
    deltas = data["deltas"].astype(np.float32)
    index = {str(n): i for i, n in enumerate(data["names"])}
  # basis_DV3[d] is what one unit of feature d moves; bilateral names drive both ICT halves.
  basis = np.zeros((len(feature_names), len(neutral), 3), np.float32)
  for d, name in enumerate(feature_names):
    for ict in ict_name(str(name)):
      if ict in index:
        basis[d] += deltas[index[ict]]
  flat = basis.reshape(len(feature_names), -1)
  return Mesh(neutral, triangles, lambda w: (np.asarray(w, np.float32) @ flat).reshape(-1, 3))


class _Stub:
  """Stands in for any chumpy class while unpickling; keeps the pickled state."""

  def __init__(self, *args, **kwargs):
    self.args, self.state = args, kwargs

  def __setstate__(self, state):
    self.state = state


class _NoChumpyUnpickler(pickle.Unpickler):
  """Unpickles FLAME's Python 2 pickles with chumpy objects replaced by `_Stub`."""

  def find_class(self, module, name):
    if module.split(".")[0] == "chumpy":
      return _Stub
    return super().find_class(module, name)


def _to_numpy(value):
  """A chumpy stub, scipy sparse matrix or array-like as a float/int NumPy array."""
  if isinstance(value, _Stub):
    state = getattr(value, "state", None)
    state = state if isinstance(state, dict) else {}
    if "x" in state:
      return np.asarray(state["x"])
    arrays = [v for v in state.values() if isinstance(v, np.ndarray)]
    if not arrays:
      raise ValueError("a chumpy object in the FLAME pickle holds no array")
    return arrays[0]
  if hasattr(value, "toarray"):
    return value.toarray()
  return np.asarray(value)


def read_flame(path):
  """Reads a FLAME model (official .pkl, chumpy-free, or .npz) into a dict of NumPy arrays."""
  if not filesystem.exists(path):
    raise FileNotFoundError(f"{path}: FLAME model not found")
  with filesystem.open(path, "rb") as f:
    raw = f.read()
  if path.endswith(".npz"):
    model = outputs.load_npz(path)
  else:
    try:
      model = _NoChumpyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # pickle raises many types for foreign or corrupt files.
      raise ValueError(f"{path}: not a readable FLAME pickle ({e})") from None
    model = {k: _to_numpy(v) for k, v in model.items() if k in FLAME_KEYS + ("num_shape",)}
  missing = [k for k in FLAME_KEYS if k not in model]
  if missing:
    raise ValueError(f"{path}: FLAME model lacks {', '.join(missing)}")
  return model


def _rodrigues(axis_angle_3):
  """Rotation matrix of an axis-angle vector."""
  angle = np.linalg.norm(axis_angle_3)
  if angle < 1e-8:
    return np.eye(3)
  k = axis_angle_3 / angle
  kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
  return np.eye(3) + np.sin(angle) * kx + (1 - np.cos(angle)) * kx @ kx


def flame_vertices(model, expression_E, jaw_3):
  """FLAME vertices for expression coefficients and a jaw axis-angle (zero shape, other joints
  at rest): expression basis, pose correctives, then linear blend skinning."""
  num_shape = int(model.get("num_shape", FLAME_NUM_SHAPE))
  shapedirs = np.asarray(model["shapedirs"], np.float64)
  # Coefficients beyond the model's expression basis (e.g. 50 given, 10 stored) have no effect.
  expdirs = shapedirs[:, :, num_shape:num_shape + len(expression_E)]
  expression_E = np.asarray(expression_E, np.float64)[:expdirs.shape[2]]
  v_shaped = np.asarray(model["v_template"], np.float64) + expdirs @ expression_E
  joints_J3 = np.asarray(model["J_regressor"], np.float64) @ v_shaped
  num_joints = len(joints_J3)
  rotations = np.repeat(np.eye(3)[None], num_joints, axis=0)
  rotations[FLAME_JAW_JOINT] = _rodrigues(np.asarray(jaw_3, np.float64))
  posedirs = np.asarray(model["posedirs"], np.float64)
  pose_feature = (rotations[1:] - np.eye(3)).reshape(-1)
  if posedirs.shape[-1] != pose_feature.size:
    raise ValueError(f"FLAME posedirs has {posedirs.shape[-1]} pose features, expected "
                     f"{pose_feature.size} for {num_joints} joints")
  v_posed = v_shaped + posedirs @ pose_feature
  parents = np.asarray(model["kintree_table"])[0].astype(np.int64)
  world = np.zeros((num_joints, 4, 4))
  for j in range(num_joints):
    local = np.eye(4)
    local[:3, :3] = rotations[j]
    has_parent = j > 0 and 0 <= parents[j] < num_joints
    local[:3, 3] = joints_J3[j] - (joints_J3[parents[j]] if has_parent else 0)
    world[j] = world[parents[j]] @ local if has_parent else local
  # Skinning uses transforms relative to the rest pose: subtract each joint's rest position.
  world[:, :3, 3] -= np.einsum("jab,jb->ja", world[:, :3, :3], joints_J3)
  blend_V44 = np.einsum("vj,jab->vab", np.asarray(model["weights"], np.float64), world)
  return np.einsum("vab,vb->va", blend_V44[:, :3, :3], v_posed) + blend_V44[:, :3, 3]


def flame_mesh(model, feature_names):
  """A FLAME mesh driven by `exp_XX` and `jaw_0..2` features (other names are ignored)."""
  names = [str(n) for n in feature_names]
  exp_index = [names.index(f"exp_{i:02d}") for i in range(100) if f"exp_{i:02d}" in names]
  jaw_index = [names.index(f"jaw_{i}") for i in range(3)] if "jaw_0" in names else []
  neutral = flame_vertices(model, np.zeros(len(exp_index)), np.zeros(3))

  def displace(effect_D):
    effect_D = np.asarray(effect_D, np.float64)
    jaw = effect_D[jaw_index] if jaw_index else np.zeros(3)
    return flame_vertices(model, effect_D[exp_index], jaw) - neutral

  # FLAME is in metres with y up and the face towards +z, as the ICT mesh; scale to centimetres.
  return Mesh(neutral * 100.0, model["f"], lambda w: displace(w) * 100.0)


def mesh_for(feature_space, feature_names, flame_model=None):
  """(Mesh, None) for drawable input, else (None, the reason faces are not drawn)."""
  if feature_space == "arkit51" or set(feature_spaces.ARKIT51) <= {str(n) for n in feature_names}:
    return ict_mesh(feature_names), None
  if feature_space == "flame53" or any(str(n).startswith("exp_") for n in feature_names):
    if not flame_model:
      return None, ("FLAME input, and no FLAME model was given: pass --flame_model=PATH to the "
                    "official FLAME pickle (or an .npz with the same arrays) to draw faces; the "
                    "FLAME licence does not allow shipping it.")
    return flame_mesh(read_flame(flame_model), feature_names), None
  return None, (f"feature space {feature_space!r} has no face model; only profiles are shown.")


def _vertex_normals(v_V3, tri_F3):
  n_F3 = np.cross(v_V3[tri_F3[:, 1]] - v_V3[tri_F3[:, 0]], v_V3[tri_F3[:, 2]] - v_V3[tri_F3[:, 0]])
  n_V3 = np.zeros_like(v_V3)
  for k in range(3):
    np.add.at(n_V3, tri_F3[:, k], n_F3)
  return n_V3 / (np.linalg.norm(n_V3, axis=1, keepdims=True) + 1e-12)


def rasterize(v_V3, tri_F3, color_V3, bounds, height=200):
  """An RGBA image [H, W, 4] of the mesh seen from +z, per-vertex colours interpolated."""
  (x0, x1), (y0, y1) = bounds
  scale = (height - 1) / (y1 - y0)
  width = int(np.ceil((x1 - x0) * scale)) + 1
  p = np.stack([(v_V3[:, 0] - x0) * scale, (y1 - v_V3[:, 1]) * scale], axis=1)
  tri_p = p[tri_F3]                                  # [F, 3, 2]
  lo = np.floor(tri_p.min(axis=1)).astype(np.int64)  # [F, 2]
  extent = np.ceil((tri_p.max(axis=1) - lo).max(axis=1)).astype(np.int64) + 1
  # Candidate pixels per triangle: its bounding square. Triangles are grouped by size so the
  # many tiny ones do not pay for the few large ones.
  pieces = []
  for size in np.unique(extent):
    faces = np.nonzero(extent == size)[0]
    off = np.stack(np.meshgrid(np.arange(size), np.arange(size), indexing="ij"), -1).reshape(-1, 2)
    pix = lo[faces, None, :] + off[None]             # [f, K, 2]
    centre = pix + 0.5
    a, b, c = (tri_p[faces, i, None] for i in range(3))
    area = ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) -
            (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))
    area = np.where(np.abs(area) < 1e-12, 1e-12, area)
    w1 = ((centre[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) -
          (centre[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0])) / area
    w2 = ((b[..., 0] - a[..., 0]) * (centre[..., 1] - a[..., 1]) -
          (b[..., 1] - a[..., 1]) * (centre[..., 0] - a[..., 0])) / area
    w0 = 1 - w1 - w2
    inside = (w0 >= -1e-6) & (w1 >= -1e-6) & (w2 >= -1e-6)
    inside &= ((pix[..., 0] >= 0) & (pix[..., 0] < width) & (pix[..., 1] >= 0) &
               (pix[..., 1] < height))
    f_idx, k_idx = np.nonzero(inside)
    pieces.append((faces[f_idx], np.stack([w0, w1, w2], -1)[f_idx, k_idx], pix[f_idx, k_idx]))
  face_n = np.concatenate([f for f, _, _ in pieces])
  bary = np.concatenate([b for _, b, _ in pieces])  # [N, 3]
  pix_n = np.concatenate([q for _, _, q in pieces])
  corners = tri_F3[face_n]
  depth = np.einsum("nk,nk->n", bary, v_V3[corners, 2])
  flat = pix_n[:, 1] * width + pix_n[:, 0]
  # The z-buffer: for each pixel keep the candidate nearest the viewer (largest z).
  order = np.lexsort((depth, flat))
  last = np.r_[flat[order][1:] != flat[order][:-1], True]
  keep = order[last]
  image = np.ones((height * width, 4), np.float32)
  image[:, 3] = 0.0
  image[flat[keep], :3] = np.einsum("nk,nkc->nc", bary[keep], color_V3[corners[keep]])
  image[flat[keep], 3] = 1.0
  return image.reshape(height, width, 4)


def shade(mesh, offsets_V3, vmax, cmap):
  """Vertices and per-vertex colours: diffuse shading times a displacement heat map."""
  v = mesh.neutral + offsets_V3
  normals = _vertex_normals(v, mesh.triangles)
  light = np.array([0.3, 0.4, 1.0]) / np.linalg.norm([0.3, 0.4, 1.0])
  diffuse = 0.35 + 0.65 * np.clip(normals @ light, 0.0, 1.0)
  heat = np.linalg.norm(offsets_V3, axis=1) / max(vmax, 1e-9)
  base = np.array([0.86, 0.86, 0.86])
  colour = cmap(np.clip(heat, 0, 1))[:, :3]
  # Small displacements stay skin-grey so the moving region stands out.
  mix = np.clip(heat * 1.5, 0, 1)[:, None]
  return v, (base * (1 - mix) + colour * mix) * diffuse[:, None]


def bounds_of(mesh, margin=0.05):
  """Front-view drawing bounds around the neutral mesh."""
  lo, hi = mesh.neutral[:, :2].min(0), mesh.neutral[:, :2].max(0)
  pad = (hi - lo) * margin
  return (lo[0] - pad[0], hi[0] + pad[0]), (lo[1] - pad[1], hi[1] + pad[1])


def face_image(mesh, effect_D, *, vmax=None, gain=1.0, height=200, cmap=None):
  """(RGBA image, max displacement) of the face deformed by `gain * effect`."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  cmap = cmap or matplotlib.colormaps["inferno_r"]
  offsets = mesh.displace(np.asarray(effect_D) * gain)
  peak = float(np.linalg.norm(offsets, axis=1).max())
  v, colours = shade(mesh, offsets, vmax if vmax else peak, cmap)
  return rasterize(v, mesh.triangles, colours, bounds_of(mesh), height), peak


def draw_face_grid(path, mesh, effects_ND, titles, *, columns=8, gain=1.0, height=180):
  """Writes a PNG grid of faces, one per effect, each with its own colour scale (cm)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  count = len(effects_ND)
  columns = max(1, min(columns, count))
  rows = -(-count // columns)
  fig, axes = plt.subplots(rows, columns, figsize=(1.55 * columns, 2.05 * rows), squeeze=False)
  for ax in axes.flat:
    ax.axis("off")
  for ax, effect, title in zip(axes.flat, effects_ND, titles):
    image, peak = face_image(mesh, effect, gain=gain, height=height)
    ax.imshow(image, interpolation="bilinear")
    ax.set_title(f"{title}\nmax {peak:.2f} cm", fontsize=7)
  fig.tight_layout(pad=0.3)
  fig.savefig(path, dpi=90, bbox_inches="tight")
  plt.close(fig)

