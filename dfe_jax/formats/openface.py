"""Reads OpenFace 2.x per-frame CSVs: action-unit intensities (`AUxx_r`), occurrences (`AUxx_c`)."""

import csv
import re

import numpy as np

_AU_COLUMN = re.compile(r"^(AU\d+)_([rc])$")


class OpenFaceError(ValueError):
  """An OpenFace CSV cannot be read as per-frame action units."""


def read_openface_csv(path):
  """Reads one CSV: `intensity` [T, A_r], `occurrence` [T, A_c] (bool), their names, `valid` [T].

  OpenFace 2.x writes headers with a leading space (`" AU01_r"`), so names are stripped.
  `valid` is OpenFace's own `success` flag when present (a frame without a tracked face
  carries zeros, not measurements); all frames count as valid when the column is absent.
  """
  try:
    with open(path, newline="") as f:
      rows = list(csv.reader(f))
  except OSError as e:
    raise OpenFaceError(f"{path}: cannot read OpenFace CSV ({e.strerror})") from e
  if not rows:
    raise OpenFaceError(f"{path}: empty OpenFace CSV")
  header = [name.strip() for name in rows[0]]
  body = [row for row in rows[1:] if any(cell.strip() for cell in row)]
  intensity_cols, occurrence_cols = {}, {}
  for j, name in enumerate(header):
    match = _AU_COLUMN.match(name)
    if match:
      (intensity_cols if match.group(2) == "r" else occurrence_cols)[match.group(1)] = j
  if not intensity_cols and not occurrence_cols:
    raise OpenFaceError(f"{path}: no AUxx_r or AUxx_c columns; is this an OpenFace 2.x CSV?")
  try:
    table = np.array([[float(cell) for cell in row] for row in body],
                     dtype=np.float64).reshape(len(body), len(header))
  except ValueError as e:
    raise OpenFaceError(f"{path}: non-numeric or ragged row ({e})") from e

  def columns(names_to_index):
    names = sorted(names_to_index, key=lambda n: int(n[2:]))
    values = table[:, [names_to_index[n] for n in names]] if names else np.zeros((len(body), 0))
    return values.astype(np.float32), np.array(names, dtype=str)

  intensity, intensity_names = columns(intensity_cols)
  occurrence, occurrence_names = columns(occurrence_cols)
  if "success" in header:
    valid = table[:, header.index("success")] > 0.5
  else:
    valid = np.ones(len(body), dtype=bool)
  return {"intensity": intensity, "intensity_names": intensity_names,
          "occurrence": occurrence > 0.5, "occurrence_names": occurrence_names, "valid": valid}
