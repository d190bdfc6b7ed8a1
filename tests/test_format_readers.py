"""The one reader and writer of the manifest and the probe results: round trips, and every bad
file stops with one line naming the file (and line) and what is wrong."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from dfe_jax.formats import dataset_info
from dfe_jax.formats import manifest
from dfe_jax.formats import probe_results
from dfe_jax.formats import video_files

HEADER = "video_id,subject_id,path,split,stress\n"


def _write(folder, text, files=("a.npz", "b.npz")):
  for name in files:
    (folder / name).write_bytes(b"")
  path = folder / "manifest.csv"
  path.write_text(text)
  return str(path)


def _error(path, **kwargs):
  with pytest.raises(manifest.ManifestError) as e:
    manifest.read(path, **kwargs)
  message = str(e.value)
  assert "\n" not in message and message.startswith(path)
  return message[len(path):]


def test_manifest_round_trip_resolves_paths_and_keeps_every_column(tmp_path):
  rows = [{"video_id": "a", "subject_id": "s1", "path": "a.npz", "split": "train"},
          {"video_id": "b", "subject_id": "s2", "path": "b.npz", "split": "val",
           "stress": "0,5"}]
  for r in rows:
    (tmp_path / r["path"]).write_bytes(b"")
  path = manifest.write(str(tmp_path / "manifest.csv"), rows,
                        columns=["video_id", "subject_id", "path", "split", "stress"])
  back = manifest.read(path)
  assert [r["path"] for r in back] == [str(tmp_path / "a.npz"), str(tmp_path / "b.npz")]
  assert [r["split"] for r in back] == ["train", "val"]
  assert [r["stress"] for r in back] == ["", "0,5"]
  assert manifest.label_columns(back) == ["stress"]


@pytest.mark.parametrize("text,kwargs,expected", [
    ("", {}, ": manifest is empty (no header line)"),
    ("video_id,path\na,a.npz\n", {}, ": manifest lacks column(s) subject_id"),
    ("video_id,subject_id\na,s1\n", {}, ": manifest lacks column(s) path"),
    (HEADER, {}, ": manifest has no rows"),
    (HEADER + "a,s1,a.npz,train,1\nb,,b.npz,train,0\n", {}, ":3: empty subject_id"),
    (HEADER + "a,s1,a.npz,train,1\nb,s2,,train,0\n", {}, ":3: empty path"),
    (HEADER + "a,s1,a.npz,train,1\nb,s2,b.npz,train,0,5\n", {},
     ":3: more fields than the header's 5 (an unquoted comma?)"),
    (HEADER + "a,s1,a.npz,train,1\n\na,s2,b.npz,train,0\n", {},
     ":4: duplicate video_id 'a' (first on line 2)"),
    (HEADER + "a,s1,a.npz,dev,1\n", {}, ":2: split 'dev' is not one of train, val, test"),
    ("video_id,subject_id,path,path\na,s1,a.npz,b.npz\n", {},
     ": column(s) path appear more than once"),
    (HEADER + "a,s1,a.npz,train," + "9" * 200_000 + "\n", {},
     ": not a readable CSV manifest (field larger than field limit"),
    (HEADER + "a,s1,a.npz,train,1\nb,s2,b.npz,,0\n", {},
     ":3: video 'b' has no split, but other videos have one (give all or none)"),
    (HEADER + "a,s1,a.npz,train,1\nb,s1,b.npz,test,0\n", {},
     ":3: subject 's1' is in split 'test' here and 'train' on line 2: a subject stays on one "
     "side"),
    (HEADER + "a,s1,a.npz,train,1\nc,s2,c.npz,train,0\n", {},
     ":3: video 'c' points at a missing file "),
    (HEADER + "a,s1,a.npz,train,1\na,s2,b.npz,train,0\n", {"need_files": False},
     ":3: duplicate video_id 'a' (first on line 2)"),
])
def test_bad_manifest_is_one_line_naming_file_line_and_problem(tmp_path, text, kwargs,
                                                                  expected):
  message = _error(_write(tmp_path, text), **kwargs)
  assert message.startswith(expected), message
  if "missing file" in expected:
    assert message.endswith(os.path.join(str(tmp_path), "c.npz"))


def test_missing_manifest_is_one_line(tmp_path):
  assert _error(str(tmp_path / "nowhere.csv")) == ": manifest not found"


def test_probe_reads_ids_and_labels_without_paths_or_files(tmp_path):
  """The probe needs `path` only for frame baselines: a path-less manifest, or one whose files
  are not (yet) there, still reads; its paths are resolved the same way."""
  path = _write(tmp_path, "video_id,subject_id,stress\na,s1,1\nb,s2,0\n", files=())
  assert [r["stress"] for r in manifest.read(path, need_files=False)] == ["1", "0"]
  path = _write(tmp_path, HEADER + "a,s1,gone.npz,,1\nb,s2,,,0\n", files=())
  rows = manifest.read(path, need_files=False)
  assert [r["path"] for r in rows] == [str(tmp_path / "gone.npz"), ""]


def test_the_probe_reads_the_manifest_through_the_one_reader(tmp_path):
  from dfe_jax.probing import inputs  # pylint: disable=g-import-not-at-top
  path = _write(tmp_path, HEADER + "a,s1,a.npz,train,1\nb,s2,b.npz,val,0\n")
  rows = manifest.read(path)
  probe = inputs.read_manifest(path)
  assert probe.rows == rows and probe.video_ids == ["a", "b"]
  np.testing.assert_array_equal(probe.subject_ids, ["s1", "s2"])
  assert probe.file_of(1) == str(tmp_path / "b.npz")
  bad = _write(tmp_path, HEADER + "a,s1,a.npz,train,1\na,s2,b.npz,val,0\n")
  with pytest.raises(manifest.ManifestError, match="duplicate video_id 'a'"):
    inputs.read_manifest(bad)


RESULTS = {"tasks": {"stress": {"type": "classification", "auroc": float("nan")}},
           "metrics": {"probe/stress/dfe/auroc": np.float64(0.75)},
           "protocol": "one sentence", "data": {"num_videos": np.int64(12)},
           "provenance": {"seeds": (0, 1)}}
# RESULTS as results.json holds them: strict JSON (NaN is null), plain numbers and lists.
ON_DISK = {"tasks": {"stress": {"type": "classification", "auroc": None}},
           "metrics": {"probe/stress/dfe/auroc": 0.75}, "protocol": "one sentence",
           "data": {"num_videos": 12}, "provenance": {"seeds": [0, 1]}}


def test_probe_results_round_trip_is_strict_json_with_its_version(tmp_path):
  json_path, md_path = probe_results.write(str(tmp_path / "probe"), RESULTS, "| table |\n")
  text = open(json_path).read()
  assert "NaN" not in text and json.loads(text)["format_version"] == probe_results.FORMAT_VERSION
  back = probe_results.read(str(tmp_path / "probe"))
  assert back == {"format_version": 1, **ON_DISK}
  assert probe_results.read(json_path) == back
  assert probe_results.read_table(str(tmp_path / "probe")) == "| table |\n" == open(md_path).read()


def test_probe_results_written_before_versions_still_read(tmp_path):
  """A results.json of an earlier dfe_jax: the same content without `format_version`."""
  (tmp_path / "results.json").write_text(json.dumps(ON_DISK))
  assert probe_results.read(str(tmp_path)) == ON_DISK


@pytest.mark.parametrize("content,expected", [
    ({**ON_DISK, "format_version": 2},
     ": probe results format_version 2; this dfe_jax reads 1 (re-run the probe, or update "
     "dfe_jax)"),
    ({"metrics": {}}, ": not probe results (no 'tasks', 'data', 'provenance')"),
    ([1, 2], ": not probe results (a JSON object is expected)"),
    ("{not json", ": not a readable results.json ("),
])
def test_bad_probe_results_are_one_line_naming_the_file(tmp_path, content, expected):
  path = tmp_path / "results.json"
  path.write_text(content if isinstance(content, str) else json.dumps(content))
  with pytest.raises(probe_results.ProbeResultsError) as e:
    probe_results.read(str(tmp_path))
  message = str(e.value)
  assert "\n" not in message and message.startswith(str(path) + expected), message


def test_missing_probe_results_is_a_file_not_found_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="results.json: no probe results"):
    probe_results.read(str(tmp_path))


def test_a_split_is_read_without_the_spaces_around_it(tmp_path):
  path = _write(tmp_path, HEADER + "a,s1,a.npz, train ,1\nb,s2,b.npz,val,0\n")
  assert [r["split"] for r in manifest.read(path)] == ["train", "val"]


def test_per_video_npz_round_trip_and_inconsistent_arrays_are_refused(tmp_path):
  path = str(tmp_path / "v.npz")
  features = np.arange(12, dtype=np.float32).reshape(4, 3)
  video_files.write_npz(path, features, [True, True, False, True], 25.0, ["a", "b", "c"],
                        au=np.ones((4, 2), np.float32), au_names=np.array(["AU01", "AU12"]))
  video = video_files.read_video(path)
  np.testing.assert_array_equal(video.features, features)
  assert video.valid.tolist() == [True, True, False, True] and video.fps == 25.0
  assert video.feature_names == ("a", "b", "c") and video.au_names == ("AU01", "AU12")
  with pytest.raises(video_files.VideoFileError, match="w.npz: refusing to write"):
    video_files.write_npz(str(tmp_path / "w.npz"), features, [True] * 3, 25.0, ["a", "b", "c"])
  assert not (tmp_path / "w.npz").exists()


def test_videos_csv_round_trip_and_a_missing_one_is_named(tmp_path):
  videos = [{"video_id": "a", "subject_id": "s1", "split": "train", "source_fps": 30.0,
             "num_frames": 10, "num_valid_frames": 9, "num_nonfinite_frames": 0, "extra": 1}]
  dataset_info.write_videos(str(tmp_path), videos)
  assert dataset_info.read_video_splits(str(tmp_path)) == {"a": "train"}
  with pytest.raises(dataset_info.DatasetInfoNotFoundError,
                     match=r"nowhere/videos.csv: no videos.csv; is .* an ingest output folder"):
    dataset_info.read_video_splits(str(tmp_path / "nowhere"))
  (tmp_path / "videos.csv").write_text("id,split\na,train\n")
  with pytest.raises(dataset_info.DatasetInfoError, match=r"videos.csv: not a readable videos.csv"):
    dataset_info.read_video_splits(str(tmp_path))


def test_discovery_results_read_back_and_stop_at_the_door(tmp_path):
  # Imported here: the rest of this file checks the formats layer without JAX.
  from dfe_jax.synthetic import display_discovery  # pylint: disable=g-import-not-at-top
  result = {"dictionary": {}, "steps": {"methods": {}}}
  path = tmp_path / "discovery.json"
  path.write_text(json.dumps(result))  # Written before versions: read as 1.
  assert display_discovery.read(str(tmp_path)) == result
  path.write_text(json.dumps({**result, "format_version": 9}))
  with pytest.raises(display_discovery.DiscoveryResultsError,
                     match=r"discovery.json: discovery results format_version 9; this dfe_jax reads 1 \("):
    display_discovery.read(str(path))
  path.write_text(json.dumps({"tasks": {}}))
  with pytest.raises(display_discovery.DiscoveryResultsError, match=r"not discovery results \(no 'dictionary'"):
    display_discovery.read(str(path))
  with pytest.raises(FileNotFoundError, match="no discovery results; run `python -m dfe_jax.discover` first"):
    display_discovery.read(str(tmp_path / "elsewhere"))


def test_reading_local_manifests_and_results_loads_no_tensorflow_or_jax(tmp_path):
  path = _write(tmp_path, HEADER + "a,s1,a.npz,train,1\n")
  probe_results.write(str(tmp_path / "probe"), RESULTS, "")
  code = ("import sys; from dfe_jax.formats import manifest, probe_results; "
          f"manifest.read({path!r}); probe_results.read({str(tmp_path / 'probe')!r}); "
          "print(sorted(m for m in ('tensorflow', 'jax') if m in sys.modules))")
  done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                        check=True)
  assert done.stdout.strip() == "[]"
