"""Float32 tolerances that follow from the arithmetic, not from one machine's rounding.

Two float32 computations of one mathematical value that differ only in the order of their sums
(BLAS or XLA blocking, chunk, batch or sharding shapes, NumPy vs XLA, fused vs unfused) differ by
rounding. With the unit roundoff U = 2**-24 (6e-8), a sum of n products is off by about
sqrt(n) U (worst case n U) relative to the magnitude of its terms, and a chain of `depth` such
layers adds their relative errors (see Higham, "Accuracy and Stability of Numerical Algorithms",
ch. 3). Hence the rule used throughout the tests:

  rtol = f32_rtol(n, depth) = 4 * depth * sqrt(n) * U          (4: headroom over the typical case)
  |actual - desired| <= rtol * (|desired| + floor * max|desired|)          (floor: 1/4 by default)

The floor is relative to the array's largest magnitude because an element that is small by
cancellation carries the error of the terms it was summed from, whose size is the array's scale,
not its own. Exact equality is only for two sides that run the identical computation (the same
program on the same inputs), and code (argmin) equality across different float paths only where
the two nearest codes are equally near within that rounding: `assert_codes_equal_except_ties`.
"""

import math

import jax
import numpy as np

U = 2.0 ** -24  # float32 unit roundoff (half of np.finfo(np.float32).eps)


def f32_rtol(sum_length, depth=1, safety=4.0):
  """Relative tolerance of a float32 result of `depth` chained sums of <= `sum_length` terms."""
  return safety * depth * math.sqrt(sum_length) * U


# The smoke-sized models of configs/rvq.py:smoke: the temporal conv encoder is 12 convs and the
# decoder 13, the longest sum 3 taps x 53 features; the frame transformer's encoder is about 10
# matmuls of <= 256 terms (2 layers x (qkv, attention, out, 2 MLP)), the same bound within 3%.
SMOKE_MODEL_RTOL = f32_rtol(sum_length=3 * 53, depth=13)   # 3.9e-5


def assert_close_f32(actual, desired, rtol, floor=0.25, err_msg=""):
  """|actual - desired| <= rtol * (|desired| + floor * max|desired|), elementwise."""
  desired = np.asarray(desired)
  scale = float(np.max(np.abs(desired))) if desired.size else 0.0
  np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * floor * scale,
                             err_msg=err_msg)


def assert_tree_close_f32(actual, desired, rtol, floor=0.25):
  """`assert_close_f32` leaf by leaf (each leaf its own scale); integer and bool leaves exact."""
  def check(path, a, b):
    name = jax.tree_util.keystr(path)
    if np.issubdtype(np.asarray(b).dtype, np.inexact):
      assert_close_f32(a, b, rtol, floor, err_msg=name)
    else:
      np.testing.assert_array_equal(a, b, err_msg=name)
  jax.tree_util.tree_map_with_path(check, actual, desired)


def assert_codes_equal_except_ties(codes_a, codes_b, z_a, z_b, codebooks_CKE, cosine=False,
                                   project_in=None, max_fraction=0.01):
  """Residual codes [S, L] of two float32 paths agree except where rounding can flip them.

  `z_a`, `z_b` are the two paths' latents [S, D] (assert them close separately), `codebooks_CKE`
  one or one-per-level codebooks, `project_in` the (kernel, bias) of a lookup projection. A row
  may differ only if, at its first differing level l, the two codes are equally near the residual
  r_a (float64, from z_a) within what separates the paths:

    |d(r_a, c_a) - d(r_a, c_b)| <= 2 (|r_a - r_b| + 2 rho) |c_a - c_b|
                                   + 4 sqrt(E) U (|r_a| + |c_a| + |c_b|)^2

  d is linear in r, so the first term is how far the other path's residual r_b can move the
  difference; rho = 4 (l + 1 + sqrt(E)) U (|r_0| + sum of the codes taken) is the float32 rounding
  of each path's residual, the last term that of its float32 distances (E-term dot products).
  With `cosine` r and c are unit vectors. Rows with a skipped level (-1) must be equal. At most
  `max_fraction` of the rows may differ. Returns the number of differing rows.
  """
  codes_a, codes_b = np.asarray(codes_a), np.asarray(codes_b)
  assert codes_a.shape == codes_b.shape, (codes_a.shape, codes_b.shape)
  books = np.asarray(codebooks_CKE, np.float64)
  rows = np.nonzero((codes_a != codes_b).any(-1))[0]
  skipped = rows[(codes_a[rows] < 0).any(-1) | (codes_b[rows] < 0).any(-1)]
  assert not len(skipped), f"rows {skipped[:10]} differ in a skipped level"
  assert len(rows) <= max_fraction * len(codes_a), f"{len(rows)} of {len(codes_a)} rows differ"

  def project(z):
    z = np.asarray(z, np.float64)
    if project_in is None:
      return z
    kernel, bias = project_in
    return z @ np.asarray(kernel, np.float64) + np.asarray(bias, np.float64)

  unit = lambda v: v / max(np.linalg.norm(v), 1e-6) if cosine else v
  for s in rows:
    r_a, r_b = project(z_a[s]), project(z_b[s])
    size = np.linalg.norm(r_a)
    dim = len(r_a)
    for level in range(codes_a.shape[1]):
      book = books[0 if len(books) == 1 else level]
      ka, kb = codes_a[s, level], codes_b[s, level]
      if ka != kb:
        rho = 4 * (level + 1 + math.sqrt(dim)) * U * size
        u_a, u_b, c_a, c_b = unit(r_a), unit(r_b), unit(book[ka]), unit(book[kb])
        shift = np.linalg.norm(u_a - u_b) + 2 * rho / (np.linalg.norm(r_a) if cosine else 1.0)
        gap = abs(np.sum((u_a - c_a) ** 2) - np.sum((u_a - c_b) ** 2))
        allowed = (2 * shift * np.linalg.norm(c_a - c_b) + 4 * math.sqrt(dim) * U * (
            np.linalg.norm(u_a) + np.linalg.norm(c_a) + np.linalg.norm(c_b)) ** 2)
        assert gap <= allowed, (f"row {s} level {level}: codes {ka} and {kb} are {gap:.3g} apart "
                                f"in squared distance, more than rounding allows ({allowed:.3g})")
        break
      r_a, r_b = r_a - book[ka], r_b - book[kb]
      size += np.linalg.norm(book[ka])
  return len(rows)


def codes_of_differing_rows(codes_a, codes_b, num_codes):
  """[K] True for every code used in a row where two code arrays [N, L] differ: after a flipped
  tie, those codes' counts and EMA statistics may differ too."""
  codes_a, codes_b = np.asarray(codes_a), np.asarray(codes_b)
  rows = (codes_a != codes_b).any(-1)
  used = np.concatenate([codes_a[rows].ravel(), codes_b[rows].ravel()])
  return np.isin(np.arange(num_codes), used)
