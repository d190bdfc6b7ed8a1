"""Dictionary-recovery measures: exact atoms score 1, random atoms do not, ICA finds a mixture."""

import numpy as np
import pytest
from scipy import sparse

from dfe_jax.synthetic import discovery

NUM_DISPLAYS, NUM_FEATURES, NUM_FRAMES = 8, 20, 5000


def _corpus(space, seed=0):
  """A toy superposition x = o + A W + noise: normalised frames [N, F], directions [G, F], A."""
  rng = np.random.default_rng(seed)
  loadings = np.zeros((NUM_DISPLAYS, NUM_FEATURES))
  # Each display owns a few features and shares one more, so every feature moves and
  # displays overlap (a partition alone would make clustering trivially right).
  for g, own in enumerate(np.array_split(rng.permutation(NUM_FEATURES), NUM_DISPLAYS)):
    idx = np.concatenate([own, rng.choice(NUM_FEATURES, 1)])
    if space == "arkit51":
      loadings[g, idx] = rng.uniform(0.3, 0.9, len(idx))
    else:
      loadings[g, idx] = rng.uniform(0.5, 1.5, len(idx)) * rng.choice((-1.0, 1.0), len(idx))
  active = rng.uniform(size=(NUM_FRAMES, NUM_DISPLAYS)) < 0.15
  activation = active * rng.uniform(0.5, 1.0, (NUM_FRAMES, NUM_DISPLAYS))
  x = activation @ loadings + 0.01 * rng.standard_normal((NUM_FRAMES, NUM_FEATURES))
  if space == "arkit51":
    # As synth_lib: a small offset on a third of the features, clipped to [0, 1], so the
    # features without an offset sit at exactly 0 about half the time at rest.
    x = np.clip(x + rng.uniform(0, 0.15, NUM_FEATURES) * (rng.uniform(size=NUM_FEATURES) < 1 / 3),
                0.0, 1.0)
  x = x.astype(np.float32)
  std = x.std(0)
  return (x - x.mean(0)) / std, discovery.display_directions(loadings, std), activation


@pytest.fixture(scope="module", params=["flame53", "arkit51"])
def fitted(request):
  frames, displays, _ = _corpus(request.param)
  methods = discovery.fit_baselines(frames, codebook_size=16, num_levels=2,
                                    num_displays_oracle=NUM_DISPLAYS, seed=0)
  return request.param, frames, displays, methods, discovery.score_methods(methods, displays,
                                                                           seed=0)


@pytest.mark.parametrize("space", ["flame53", "arkit51"])
def test_ground_truth_atoms_score_one(space):
  frames, displays, _ = _corpus(space)
  if space == "arkit51":
    assert (frames == frames.min(0)).mean() > 0.05  # The clip really bites.
  # float32 atoms, shuffled and rescaled: cosine ignores order and scale; the float64 cosine of
  # identical rows is 1 to ~1e-15, so 1e-6 leaves room for any platform's rounding.
  atoms = (displays[::-1] * 3.0).astype(np.float32)
  r = discovery.dictionary_recovery(atoms, displays)
  assert r["mean"] == pytest.approx(1.0, abs=1e-6)
  assert r["min"] == pytest.approx(1.0, abs=1e-6)
  assert r["num_found"] == NUM_DISPLAYS and r["num_atoms"] == NUM_DISPLAYS
  assert r["purity"] == pytest.approx(1.0, abs=1e-12)
  np.testing.assert_array_equal(r["best_atom_by_display"], np.arange(NUM_DISPLAYS)[::-1])
  scores = discovery.score_methods(
      {"truth": discovery.Atoms(atoms, null_frames_NF=frames)}, displays, seed=0)
  assert scores["truth"]["beats_null"]


def test_random_atoms_do_not_find_displays():
  frames, displays, _ = _corpus("flame53")
  rng = np.random.default_rng(1)
  methods = {
      "gaussian": discovery.Atoms(rng.standard_normal((16, NUM_FEATURES)), null_frames_NF=frames),
      "frames": discovery.Atoms(frames[rng.choice(len(frames), 16)], null_frames_NF=frames),
  }
  scores = discovery.score_methods(methods, displays, seed=0)
  # Random directions in 20-D have best cosines ~0.4-0.7 with 8 fixed ones: well below 0.9.
  assert scores["gaussian"]["num_found"] == 0 and scores["gaussian"]["purity"] == 0.0
  assert scores["gaussian"]["mean"] < 0.8
  # Neither claims anything; random frames *are* the null, so they sit within a few of its
  # draw-to-draw stds (Gaussian directions fall below it: frames lie near single displays).
  assert not scores["gaussian"]["beats_null"] and scores["gaussian"]["margin_over_null"] < 0.05
  s = scores["frames"]
  assert not s["beats_null"] and abs(s["margin_over_null"]) < 5 * s["null"]["mean_std"] + 0.05


def test_fitted_methods(fitted):
  space, _, displays, methods, scores = fitted
  assert list(methods) == ["kmeans", "residual_kmeans", "pca", "nmf_split_sign",
                           "dict_learning", "ica", "ica_oracle"]
  assert methods["residual_kmeans"].atoms_MF.shape == (2 * 16, NUM_FEATURES)
  assert {n for n, m in methods.items() if m.sign_invariant} == {"pca", "dict_learning", "ica",
                                                                   "ica_oracle"}
  assert [n for n, m in methods.items() if m.is_oracle] == ["ica_oracle"]
  count = discovery.component_count(methods["pca"].null_frames_NF)
  assert all(len(methods[n].atoms_MF) == count
             for n in ("pca", "nmf_split_sign", "dict_learning", "ica"))
  # The G-component ICA of independent sparse sources recovers them (mean >= 0.999, all 8
  # found, null <= 0.69 over seeds 0-7 in each space while writing this test); 0.9 and 0.8
  # leave wide margins for other BLAS or sklearn versions.
  oracle = scores["ica_oracle"]
  assert oracle["converged"], space
  assert oracle["mean"] > 0.9 and oracle["num_found"] >= NUM_DISPLAYS - 1, space
  assert oracle["beats_null"] and oracle["null"]["mean"] < 0.8, space
  # The same measure calls PCA's orthogonal components a failure on this mixture (<= 2 of 8
  # found over those seeds).
  assert scores["pca"]["num_found"] < NUM_DISPLAYS // 2, space
  table = discovery.format_table(scores)
  assert table.count("\n") == len(scores) + 1 and "oracle" in table


def test_residual_codes_match_the_fit(fitted):
  _, frames, _, _, _ = fitted
  centroids, sizes, converged = discovery.residual_kmeans(frames, codebook_size=16,
                                                          num_levels=2, seed=0)
  codes = discovery.residual_codes(frames, centroids)
  assert codes.shape == (len(frames), 2) and converged.all()
  np.testing.assert_array_equal(np.bincount(codes[:, 0], minlength=16), sizes[0])
  features = discovery.one_hot_codes(codes, 16)
  assert features.shape == (len(frames), 32) and np.all(features.sum(1) == 2)


def test_sign_convention_and_zero_atoms():
  _, displays, _ = _corpus("flame53")
  # -W_g is "display g undone": signed, it is as far from W_g as can be, and finds nothing.
  single = discovery.dictionary_recovery(-displays[:1], displays[:1])
  assert single["mean"] == pytest.approx(-1.0, abs=1e-6)
  signed = discovery.dictionary_recovery(-displays, displays)
  assert signed["num_found"] == 0 and signed["purity"] == 0.0
  invariant = discovery.dictionary_recovery(-displays, displays, sign_invariant=True)
  assert invariant["mean"] == pytest.approx(1.0, abs=1e-6)
  assert invariant["num_found"] == NUM_DISPLAYS
  atoms = np.stack([np.zeros(NUM_FEATURES), displays[0], np.zeros(NUM_FEATURES)])
  for sign_invariant in (False, True):
    r = discovery.dictionary_recovery(atoms, displays, sign_invariant=sign_invariant)
    assert r["num_found"] == 1 and r["purity"] == pytest.approx(1 / 3)
    weighted = discovery.dictionary_recovery(atoms, displays, usage_M=[3, 1, 0],
                                             sign_invariant=sign_invariant)
    assert weighted["purity"] == pytest.approx(0.25)
  empty = discovery.dictionary_recovery(np.zeros((0, NUM_FEATURES)), displays)
  assert empty["num_atoms"] == 0 and empty["mean"] == 0.0 and empty["purity"] == 0.0


def test_display_directions_divide_by_std():
  loadings = np.array([[1.0, 2.0, 0.0]])
  np.testing.assert_allclose(discovery.display_directions(loadings, [0.5, 4.0, 1.0]),
                             [[2.0, 0.5, 0.0]])


def test_active_displays_use_step_means():
  display_TG = np.zeros((8, 2))
  display_TG[0:2, 0] = 1.0   # Half of step 0 (frames 0-3) at 1: mean 0.5.
  display_TG[4, 1] = 0.8     # A quarter of step 1 at 0.8: mean 0.2 < 0.25.
  active = discovery.active_displays(display_TG, np.array([0, 4]), np.array([4, 8]), 0.25)
  np.testing.assert_array_equal(active, [[True, False], [False, False]])


def test_multilabel_auroc():
  rng = np.random.default_rng(0)
  labels = rng.uniform(size=(2000, 5)) < 0.3
  labels[:1000, 4] = False  # Single-class in train: skipped, and said so.
  noisy = labels + 0.1 * rng.standard_normal(labels.shape)
  good = discovery.multilabel_auroc(noisy[:1000], labels[:1000], noisy[1000:], labels[1000:])
  assert good["num_scored"] == 4 and good["num_labels"] == 5
  assert np.isnan(good["auroc_by_label"][4])
  assert good["macro_auroc"] > 0.99
  # Random features: each label's AUROC on 1000 test steps has std ~0.02; 0.1 is > 5 of those.
  noise = rng.standard_normal((2000, 5))
  chance = discovery.multilabel_auroc(noise[:1000], labels[:1000], noise[1000:], labels[1000:])
  assert abs(chance["macro_auroc"] - 0.5) < 0.1
  # Bag-of-tokens: a code that is the label (level 0) plus a random level scores ~1.
  codes = np.stack([labels[:, 0].astype(int), rng.integers(0, 4, len(labels))], 1)
  codes[::7, 1] = -1  # Skipped levels add no token.
  tokens = discovery.one_hot_codes(codes, 4)
  assert sparse.issparse(tokens) and tokens.shape == (2000, 8)
  assert tokens.sum() == 2 * len(codes) - len(codes[::7])
  coded = discovery.multilabel_auroc(tokens[:1000], labels[:1000, :1], tokens[1000:],
                                     labels[1000:, :1])
  assert coded["macro_auroc"] > 0.99 and coded["num_scored"] == 1


def test_nmi_by_level():
  rng = np.random.default_rng(0)
  label = rng.integers(0, 4, 1000)
  nmi = discovery.nmi_by_level(np.stack([label, rng.integers(0, 4, 1000)], 1), label)
  assert nmi[0] == pytest.approx(1.0, abs=1e-9) and nmi[1] < 0.05
