"""Tests the blendshape→AU mapping: coverage, documentation and arithmetic."""

import numpy as np
import pytest

from dfe_jax.formats import feature_spaces
from dfe_jax.video import action_units

# The AUs issue 7 asks for; the mapping may add more but never drop one of these.
REQUIRED = ("AU01", "AU02", "AU04", "AU05", "AU06", "AU07", "AU09", "AU10", "AU12", "AU14",
            "AU15", "AU17", "AU18", "AU20", "AU22", "AU26", "AU45")


def _one_hot(**scores):
  row = np.zeros(len(feature_spaces.ARKIT51), np.float32)
  for name, score in scores.items():
    row[feature_spaces.ARKIT51.index(name)] = score
  return row


def test_required_aus_present_and_unique():
  assert set(REQUIRED) <= set(action_units.AU_NAMES)
  assert len(set(action_units.AU_NAMES)) == len(action_units.AU_NAMES)


def test_every_mapping_row_is_in_the_docstring_table():
  doc = action_units.__doc__
  assert "not a trained AU detector" in doc
  for code, name, combine, blendshapes in action_units.MAPPING:
    line = next((l for l in doc.splitlines() if l.startswith(f"| {code} ")), None)
    assert line is not None, code
    assert name in line and action_units.formula(combine, blendshapes) in line, line


def test_every_blendshape_name_is_arkit51():
  used = {b for _, _, _, bs in action_units.MAPPING for b in bs}
  assert used <= set(feature_spaces.ARKIT51)


def test_smile_maps_to_au12_only_among_mouth_corner_aus():
  au, names = action_units.from_blendshapes(_one_hot(mouthSmileLeft=0.8, mouthSmileRight=0.6))
  values = dict(zip(names, au))
  assert values["AU12"] == pytest.approx(0.7)
  assert values["AU15"] == 0.0 and values["AU14"] == 0.0
  assert au.dtype == np.float32 and au.shape == (len(names),)


def test_lips_part_needs_open_jaw_and_open_lips():
  au, names = action_units.from_blendshapes(
      np.stack([_one_hot(jawOpen=0.6), _one_hot(jawOpen=0.6, mouthClose=0.6)]))
  au25 = au[:, names.index("AU25")]
  au26 = au[:, names.index("AU26")]
  np.testing.assert_allclose(au25, [0.6, 0.0])
  np.testing.assert_allclose(au26, [0.6, 0.6])


def test_extra_columns_are_ignored_and_missing_ones_are_named():
  names = ("head_pitch",) + feature_spaces.ARKIT51
  values = np.concatenate([[9.0], _one_hot(browInnerUp=0.5)])[None]
  au, au_names = action_units.from_blendshapes(values, names)
  assert au.shape == (1, len(au_names)) and au[0, au_names.index("AU01")] == 0.5
  without = tuple(n for n in feature_spaces.ARKIT51 if n != "browInnerUp")
  with pytest.raises(ValueError, match="browInnerUp"):
    action_units.from_blendshapes(np.zeros((1, len(without))), without)
