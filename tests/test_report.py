"""Report: renders in headless Chromium with every image loaded; faces, FLAME and token maths."""

import csv
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest

from dfe_jax.data import ingest_lib
from dfe_jax.formats import dataset_info
from dfe_jax.formats import feature_spaces
from dfe_jax.formats import outputs
from dfe_jax.reporting import face_render
from dfe_jax.reporting import report_lib

from dfe_jax.reporting import token_stats
from dfe_jax.synthetic import display_discovery
from dfe_jax.synthetic import synth_lib
from dfe_jax.tokenizer import tokenize_lib
from dfe_jax.tokenizer import trained_model
from dfe_jax.training import train_lib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixtures_flame  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "configs"))
import rvq  # pylint: disable=g-import-not-at-top,wrong-import-position

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _write_clip(path, frames=150, fps=25.0):
  """A short synthetic video for thumbnails; None when OpenCV cannot write one here."""
  cv2 = pytest.importorskip("cv2")
  writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"MJPG"), fps, (64, 48))
  for t in range(frames):
    writer.write(np.full((48, 64, 3), (t * 4) % 255, np.uint8))
  writer.release()
  return path if os.path.getsize(path) > 0 else None


@pytest.fixture(scope="module")
def arkit_run(tmp_path_factory):
  """A blendshape corpus, a 2-step model and a manifest whose videos have a video_path."""
  root = tmp_path_factory.mktemp("report")
  spec = synth_lib.CorpusSpec(num_subjects=8, videos_per_subject=2, video_seconds=6.0, seed=5,
                              space="arkit51")
  manifest = synth_lib.write_corpus(spec, str(root / "corpus"), overwrite=True)
  shards = str(root / "shards")
  ingest_lib.ingest(manifest, shards, ingest_lib.IngestOptions(
      num_shards=2, val_fraction=0.25, test_fraction=0.125, num_processes=1))
  config = rvq.get_config("smoke")
  config.data_dir = shards
  config.total_steps = 2
  config.eval_every_steps = 2
  config.checkpoint_every_steps = 2
  config.log_every_steps = 1
  workdir = str(root / "run")
  train_lib.train_and_evaluate(config, workdir)
  with open(manifest) as f:
    rows = list(csv.DictReader(f))
  clip = _write_clip(str(root / "clip.avi"))
  for row in rows:
    row["path"] = os.path.join(os.path.dirname(manifest), row["path"])
    row["video_path"] = clip or ""  # One short clip stands in for every source video.
  with_video = str(root / "manifest_video.csv")
  with open(with_video, "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
  return dict(root=root, workdir=workdir, manifest=with_video, corpus_manifest=manifest,
              shards=shards)


_CHECK = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src);
  const div = document.createElement("div");
  div.id = "imgcheck";
  div.textContent = "images=" + imgs.length + " broken=" + broken.length + " " + broken.join(",");
  document.body.appendChild(div);
});
</script>"""


def _chromium(*args, tmp):
  """Runs headless Chromium with a fresh profile; returns stdout."""
  profile = tmp / f"profile-{len(os.listdir(tmp))}"
  return subprocess.run(
      [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
       "--disable-background-networking", "--disable-component-update", "--disable-sync",
       f"--user-data-dir={profile}", "--virtual-time-budget=10000", *args],
      capture_output=True, text=True, timeout=120, check=True).stdout


def test_report_renders_in_chromium_with_every_section_and_image(arkit_run, tmp_path):
  out = str(tmp_path / "report")
  path = report_lib.write_report(arkit_run["workdir"], out, manifest=arkit_run["manifest"],
                                 top_tokens=12)
  page = open(path).read()
  for anchor in ("overview", "training", "usage", "dictionary", "composition", "facs",
                 "timing", "exemplars", "reconstruction"):
    assert f'<section id="{anchor}">' in page and f'href="#{anchor}"' in page
  sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
  assert {"token_faces.png", "composition_faces.png", "token_au.png", "recon_by_levels.png",
          "training_curves.png"} <= set(sources)
  for src in sources:  # Relative files beside the page: it opens from disk, no server.
    assert "/" not in src and open(os.path.join(out, src), "rb").read(4) == b"\x89PNG"
  if os.path.exists(os.path.join(arkit_run["root"], "clip.avi")):
    assert any(s.startswith("thumb_") for s in sources), "video_path gives thumbnails"
  assert "AUs from the per-video files" in page  # The synthetic corpus ships `au` arrays.
  with pytest.raises(outputs.OutputExistsError):
    report_lib.write_report(arkit_run["workdir"], out)
  if CHROMIUM is None:
    pytest.skip("chromium is not installed (apt-get install -y chromium): render check skipped")
  check = os.path.join(out, "check.html")
  with open(check, "w") as f:
    f.write(page.replace("</body>", _CHECK + "</body>"))
  dom = _chromium("--dump-dom", f"file://{check}", tmp=tmp_path)
  found = re.search(r'id="imgcheck">images=(\d+) broken=(\d+)', dom)
  assert found, "the page's load event never ran"
  assert int(found.group(1)) == len(sources) and found.group(2) == "0", found.group(0)
  shot = str(tmp_path / "shot.png")
  _chromium(f"--screenshot={shot}", "--window-size=1200,2400", f"file://{path}", tmp=tmp_path)
  import matplotlib.image  # pylint: disable=g-import-not-at-top
  pixels = matplotlib.image.imread(shot)
  assert pixels[..., :3].std() > 0.05, "the screenshot is blank"


def test_report_shows_display_discovery_against_every_baseline(arkit_run, tmp_path):
  """dfe-discover's results in the report: the table, the verdict and each display's match."""
  trained = trained_model.load(arkit_run["workdir"])
  tokens = str(tmp_path / "tokens")
  tokenize_lib.tokenize_videos(trained, arkit_run["corpus_manifest"], tokens)
  result = display_discovery.evaluate(trained, tokens, arkit_run["corpus_manifest"],
                                      dataset_info.read_video_splits(arkit_run["shards"]))
  assert {"DFE tokens", "kmeans", "residual_kmeans", "pca", "ica", "ica_oracle"} <= set(
      result["dictionary"])
  assert result["dictionary"]["ica_oracle"]["is_oracle"]
  assert result["dictionary"]["DFE tokens"]["null"] is not None
  assert set(result["steps"]["methods"]) == {"DFE tokens", "residual k-means", "raw step means"}
  display_discovery.write(result, str(tmp_path / "discovery"))
  out = str(tmp_path / "report")
  path = report_lib.write_report(arkit_run["workdir"], out, tokens=tokens,
                                 manifest=arkit_run["corpus_manifest"],
                                 discovery_dir=str(tmp_path / "discovery"), top_tokens=4)
  page = open(path).read()
  assert '<section id="discovery">' in page and "beats its null" in page
  assert display_discovery.verdict(result).split(":")[0] in page
  assert "discovery_matches.png" in page
  assert open(os.path.join(out, "discovery_matches.png"), "rb").read(4) == b"\x89PNG"
  assert '<section id="probes">' in page and "No results.json" in page


def test_tokens_file_gives_the_same_usage_as_encoding_here(arkit_run, tmp_path):
  data = report_lib.gather(arkit_run["workdir"], str(tmp_path), manifest=arkit_run["manifest"])
  tokens = data.tokens
  half = len(tokens["video_id"]) // 2
  cut = int(tokens["offset"][half])
  # Written as two shards of the DESIGN layout; the loader must stitch offsets back together.
  for i, (lo, hi, rows) in enumerate([(0, half, slice(0, cut)),
                                      (half, len(tokens["video_id"]), slice(cut, None))]):
    part = {k: tokens[k][rows] for k in ("codes", "valid", "frame_start", "frame_end")}
    outputs.save_npz(str(tmp_path / f"tokens-{i:05d}-of-00002.npz"),
                     video_id=tokens["video_id"][lo:hi],
                     offset=tokens["offset"][lo:hi + 1] - tokens["offset"][lo],
                     codebook_size=tokens["codebook_size"], num_levels=tokens["num_levels"],
                     shared_codebook=tokens["shared_codebook"], **part)
  loaded = token_stats.load_tokens(str(tmp_path))
  np.testing.assert_array_equal(loaded["offset"], tokens["offset"])
  np.testing.assert_array_equal(loaded["codes"], tokens["codes"])
  k = int(tokens["codebook_size"])
  np.testing.assert_array_equal(token_stats.usage_counts(loaded, k),
                                token_stats.usage_counts(tokens, k))


def test_run_table_splits_at_video_boundaries_and_invalid_steps():
  tokens = {"video_id": np.array(["a", "b"]), "offset": np.array([0, 4, 7]),
            "codes": np.array([[1], [1], [1], [1], [1], [2], [2]]),
            "valid": np.array([1, 1, 0, 1, 1, 1, 1], bool),
            "frame_start": np.arange(7) * 4, "frame_end": np.arange(7) * 4 + 4}
  runs = token_stats.runs(tokens)
  assert [(r["code"], r["video"], r["length"]) for r in runs] == [
      (1, 0, 2), (1, 0, 1), (1, 1, 1), (2, 1, 2)]
  assert token_stats.describe_runs(token_stats.longest_runs(runs)[2], tokens, 25.0) == [
      ("b", 0.8, 0.32)]


def test_ict_left_blendshape_moves_the_subjects_left_side():
  mesh = face_render.ict_mesh(feature_spaces.ARKIT51)
  for name in ("mouthSmileLeft", "eyeBlinkLeft", "browDownLeft"):
    effect = np.zeros(len(feature_spaces.ARKIT51))
    effect[feature_spaces.ARKIT51.index(name)] = 1.0
    moved = np.linalg.norm(mesh.displace(effect), axis=1)
    # The face looks along +z, so the subject's left is +x.
    assert mesh.neutral[moved > 0.5 * moved.max(), 0].mean() > 1.0, name


def test_flame_pickle_without_chumpy_matches_npz_and_jaw_rotates_lower_face(tmp_path):
  model = fixtures_flame.write_flame_pickle(str(tmp_path / "flame.pkl"))
  fixtures_flame.write_flame_npz(str(tmp_path / "flame.npz"))
  from_pickle = face_render.read_flame(str(tmp_path / "flame.pkl"))
  from_npz = face_render.read_flame(str(tmp_path / "flame.npz"))
  for key in face_render.FLAME_KEYS:
    np.testing.assert_allclose(np.asarray(from_pickle[key], float), from_npz[key])
  rest = face_render.flame_vertices(model, np.zeros(3), np.zeros(3))
  np.testing.assert_allclose(rest, model["v_template"], atol=1e-12)
  expression = np.array([0.0, 2.0, 0.0])
  moved = face_render.flame_vertices(model, expression, np.zeros(3))
  np.testing.assert_allclose(moved - rest, 2.0 * model["shapedirs"][:, :, 301], atol=1e-12)
  jaw = face_render.flame_vertices(model, np.zeros(3), np.array([0.3, 0.0, 0.0]))
  lower = model["weights"][:, fixtures_flame.JAW] == 1
  pivot = (model["J_regressor"] @ model["v_template"])[fixtures_flame.JAW]
  # Skinned vertices rotate rigidly about the jaw joint (plus the small pose correctives).
  radius = lambda v: np.linalg.norm(v[lower] - pivot, axis=1)
  np.testing.assert_allclose(radius(jaw), radius(rest), atol=5e-3)
  assert np.abs(jaw[lower] - rest[lower]).max() > 0.01
  mesh, why = face_render.mesh_for("flame53", feature_spaces.FLAME53, str(tmp_path / "flame.pkl"))
  assert why is None
  effect = np.zeros(53)
  effect[feature_spaces.FLAME53.index("jaw_0")] = 0.3
  face_render.draw_face_grid(str(tmp_path / "faces.png"), mesh, effect[None], ["jaw"])
  assert os.path.getsize(tmp_path / "faces.png") > 1000
  _, why = face_render.mesh_for("flame53", feature_spaces.FLAME53, None)
  assert "--flame_model" in why
