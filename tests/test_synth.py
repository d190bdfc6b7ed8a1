"""The synthetic corpus: deterministic, well-formed, and its labels carry the traits."""

import csv
import os

import numpy as np

from dfe_jax.formats import feature_spaces
from dfe_jax.formats import outputs
from dfe_jax.synthetic import synth_lib


def _video(manifest, row=0):
  with open(manifest) as f:
    r = list(csv.DictReader(f))[row]
  return outputs.load_npz(os.path.join(os.path.dirname(manifest), r["path"]))


def test_same_seed_same_corpus_and_other_seed_differs(tmp_path):
  spec = synth_lib.CorpusSpec(num_subjects=2, videos_per_subject=2, video_seconds=4.0, seed=7)
  a = synth_lib.write_corpus(spec, str(tmp_path / "a"))
  b = synth_lib.write_corpus(spec, str(tmp_path / "b"), num_workers=2)
  c = synth_lib.write_corpus(synth_lib.CorpusSpec(num_subjects=2, videos_per_subject=2,
                                              video_seconds=4.0, seed=8), str(tmp_path / "c"))
  for row in range(4):
    va, vb, vc = _video(a, row), _video(b, row), _video(c, row)
    assert va.keys() == vb.keys()
    for key in va:
      np.testing.assert_array_equal(va[key], vb[key])
    assert not np.array_equal(va["features"], vc["features"])
  assert open(a).read() == open(b).read()


def test_flame53_video_matches_the_data_contract(small_corpus):
  v = _video(small_corpus)
  t = int(synth_lib.CorpusSpec().fps * 12)
  assert v["features"].shape == (t, 53) and v["features"].dtype == np.float32
  assert tuple(v["feature_names"]) == feature_spaces.FLAME53
  assert v["valid"].dtype == bool and v["valid"].shape == (t,)
  assert v["display"].shape == (t, 16) and v["au"].shape[0] == t
  assert float(v["fps"]) == 25.0
  np.testing.assert_array_equal(v["features"][~v["valid"]], 0.0)
  displays = outputs.load_npz(os.path.join(os.path.dirname(small_corpus), "displays.npz"))
  assert displays["loadings"].shape == (16, 53)
  assert set(displays["kind"]) == {"symmetric", "one-sided"}


def test_arkit51_uses_mediapipe_names_and_unit_range(tmp_path):
  spec = synth_lib.CorpusSpec(space="arkit51", num_subjects=2, videos_per_subject=1,
                              video_seconds=20.0)
  v = _video(synth_lib.write_corpus(spec, str(tmp_path)))
  assert tuple(v["feature_names"]) == feature_spaces.ARKIT51
  assert v["features"].min() >= 0.0 and v["features"].max() <= 1.0
  assert v["features"].max() > 0.3  # displays really move blendshapes


def test_one_sided_displays_load_one_side_of_a_pair():
  d = synth_lib.make_dictionary(synth_lib.CorpusSpec(space="arkit51", num_displays=12))
  names = feature_spaces.ARKIT51
  for g, kind in enumerate(d.kind):
    active = {names[i] for i in np.flatnonzero(d.loadings_GD[g])}
    lefts = {n[:-4] for n in active if n.endswith("Left")}
    rights = {n[:-5] for n in active if n.endswith("Right")}
    if kind == "symmetric":
      assert lefts == rights
    else:
      assert not lefts & rights


def test_display_rates_follow_the_latent_traits(tmp_path):
  spec = synth_lib.CorpusSpec(num_subjects=60, videos_per_subject=2, video_seconds=30.0, seed=1)
  manifest = synth_lib.write_corpus(spec, str(tmp_path))
  d = synth_lib.make_dictionary(spec)
  with open(manifest) as f:
    rows = list(csv.DictReader(f))
  activity = np.stack([_video(manifest, i)["display"].mean(0) for i in range(len(rows))])
  for k, trait in enumerate(synth_lib.TRAITS):
    label = np.array([float(r[trait]) for r in rows])
    for g in np.flatnonzero(d.trait_effects_GK[:, k]):
      r = np.corrcoef(label, activity[:, g])[0, 1]
      assert np.sign(r) == np.sign(d.trait_effects_GK[g, k]) and abs(r) > 0.15, (trait, g, r)
  stress = np.array([int(r["stress"]) for r in rows])
  assert 0.25 < stress.mean() < 0.75
