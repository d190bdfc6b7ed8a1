"""The formats layer: each format's one reader checks versions at the door and names the file."""

import pathlib

import numpy as np
import pytest

from dfe_jax.formats import dataset_info
from dfe_jax.formats import tokens


def _write(path, **overrides):
  arrays = dict(video_id=np.array(["a", "b"]), offset=np.array([0, 2, 3], np.int64),
                codes=np.array([[1, 2], [3, -1], [-1, -1]], np.int32),
                valid=np.array([True, True, False]), frame_start=np.array([0, 4, 8], np.int32),
                frame_end=np.array([4, 8, 12], np.int32), codebook_size=np.int32(8),
                num_levels=np.int32(2), shared_codebook=np.bool_(True))
  arrays.update(overrides)
  np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
  return str(path)


def test_written_tokens_read_back_with_their_version(tmp_path):
  rows = dict(codes=np.array([[1, 2], [3, -1], [-1, -1]], np.int32),
              valid=np.array([True, True, False]), frame_start=np.array([0, 4, 8], np.int32),
              frame_end=np.array([4, 8, 12], np.int32))
  path = str(tmp_path / "tokens.npz")
  tokens.write(path, ["a", "b"], [2, 1], rows,
               dict(codebook_size=np.int32(8), num_levels=np.int32(2),
                    shared_codebook=np.bool_(True)))
  assert int(np.load(path)["format_version"]) == tokens.FORMAT_VERSION
  data = tokens.read(str(tmp_path))
  np.testing.assert_array_equal(data["offset"], [0, 2, 3])
  np.testing.assert_array_equal(data["codes"], rows["codes"])
  assert list(data["video_id"]) == ["a", "b"] and int(data["codebook_size"]) == 8


def test_files_from_before_versions_still_open(tmp_path):
  data = tokens.read(_write(tmp_path / "tokens.npz"))
  assert len(data["codes"]) == 3


def test_unknown_version_stops_at_the_door_naming_file_and_versions(tmp_path):
  path = _write(tmp_path / "tokens.npz", format_version=np.int32(99))
  with pytest.raises(tokens.TokensError, match=r"tokens.npz: tokens format_version 99; this "
                                               r"dfe_jax reads 1 "):
    tokens.read(path)


def test_shards_stitch_and_a_missing_shard_is_named(tmp_path):
  _write(tmp_path / "tokens-00000-of-00002.npz")
  _write(tmp_path / "tokens-00001-of-00002.npz", video_id=np.array(["c", "d"]))
  data = tokens.read(str(tmp_path))
  np.testing.assert_array_equal(data["offset"], [0, 2, 3, 5, 6])
  (tmp_path / "tokens-00001-of-00002.npz").unlink()
  with pytest.raises(tokens.TokensError, match="tokens-00001-of-00002.npz: shard missing"):
    tokens.read(str(tmp_path / "tokens-00000-of-00002.npz"))


def test_duplicate_videos_and_inconsistent_lengths_are_named(tmp_path):
  with pytest.raises(tokens.TokensError, match="video_id 'a' appears 2 times"):
    tokens.read(_write(tmp_path / "dup.npz", video_id=np.array(["a", "a"])))
  with pytest.raises(tokens.TokensError, match="bad.npz: 'offset' ends at 5"):
    tokens.read(_write(tmp_path / "bad.npz", offset=np.array([0, 2, 5], np.int64)))


def test_dataset_json_of_an_unknown_version_stops_at_the_door(tmp_path):
  (tmp_path / "dataset.json").write_text('{"format_version": 7}')
  with pytest.raises(dataset_info.DatasetInfoError,
                     match=r"dataset.json: dataset format_version 7; this dfe_jax reads 1 "):
    dataset_info.read(str(tmp_path))
  (tmp_path / "dataset.json").write_text('{"format_version": 1, "fps": 25}')
  assert dataset_info.read(str(tmp_path / "dataset.json"))["fps"] == 25


LEGACY = pathlib.Path(__file__).resolve().parent / "data" / "legacy_c10fd6b"


def test_files_from_before_the_layout_change_restore_and_tokenize_the_same(tmp_path):
  """A checkpoint, model.npz and tokens written by dfe_jax at c10fd6b open with today's code,
  and today's tokenizer gives that run's codes (except float ties, tests/tolerances.py)."""
  # Imported here: the rest of this file checks the formats layer without JAX.
  from dfe_jax.tokenizer import numpy_tokenizer  # pylint: disable=g-import-not-at-top
  from dfe_jax.tokenizer import tokenize_lib  # pylint: disable=g-import-not-at-top
  from dfe_jax.tokenizer import trained_model  # pylint: disable=g-import-not-at-top
  from tolerances import assert_codes_equal_except_ties  # pylint: disable=g-import-not-at-top
  trained = trained_model.load(str(LEGACY / "run"))
  assert trained.step == 2
  tokenize_lib.tokenize_videos(trained, str(LEGACY / "corpus" / "manifest.csv"),
                               str(tmp_path / "tokens"), latents=True)
  today, before = tokens.read(str(tmp_path / "tokens")), tokens.read(str(LEGACY / "tokens"))
  assert list(today["video_id"]) == list(before["video_id"])
  np.testing.assert_array_equal(today["offset"], before["offset"])
  np.testing.assert_array_equal(today["valid"], before["valid"])
  exported = numpy_tokenizer.NumpyTokenizer.load(str(LEGACY / "model.npz"))
  valid = today["valid"]
  assert_codes_equal_except_ties(before["codes"][valid], today["codes"][valid],
                                 today["latents"][valid], today["latents"][valid],
                                 exported.codebooks_CKE, cosine=exported.cosine)
