"""Bag-of-words probes of DFE tokens against functionals, k-means, AU and continuous baselines.

Command (the main job runs it on the synthetic corpus after `tokenize`):

  python -m dfe_jax.probe --config=configs/probe.py \
      --config.tokens=runs/demo/tokens \
      --config.manifest=runs/demo/corpus/manifest.csv \
      --config.continuous_tokens=runs/demo/tokens_continuous \
      --output_dir=runs/demo/probe

Runtime: the synthetic corpus (144 videos, 48 subjects) × 3 tasks × 6 representations, 5
subject-grouped folds × 3 repeats, takes under a minute with the default 2 workers on a 2-core
CPU; `--config=configs/probe.py:smoke` (3 folds × 1 repeat) is a few times faster.

Expected result: `results.json` and `results.md` in `--output_dir`. The `chance` row is AUROC
0.5 and Pearson r 0 by construction. Every other row is whatever the run measures.
"""

import ml_collections


def get_config(arg=None):
  """Probe settings; `arg='smoke'` shrinks the protocol to one repeat of 3 folds."""
  config = ml_collections.ConfigDict()
  # Inputs. Lists are comma-separated strings so they override easily from the command line.
  config.tokens = ""  # tokens.npz, one shard of a sharded set, or the folder holding them.
  config.manifest = ""  # manifest.csv: video_id, subject_id, path, label columns.
  config.tasks = "stress,depression,extraversion"  # Label columns; "" = every non-reserved column.
  config.task_types = ""  # e.g. "extraversion:regression"; others: two values = classification.
  config.subject_labels = ""  # Optional CSV keyed by subject_id with per-subject label columns.
  config.allow_missing_videos = False  # Drop (and count) manifest videos absent from the tokens.

  # Representations: "auto" = dfe, functionals, kmeans, au, continuous, chance, skipping those
  # whose inputs are absent; or a list from dfe, dfe_per_level, functionals, kmeans, au,
  # continuous, chance.
  config.representations = "auto"
  # Tokens with `latents` from the unquantized model (configs/continuous.py, tokenize --latents).
  config.continuous_tokens = ""
  config.openface_table = ""  # CSV: video_id, openface_csv[, fps]; else AUs from the `au` arrays.
  config.feature_tables = ""  # User CSVs keyed by video_id (per video, or per frame then pooled).

  config.dfe = ml_collections.ConfigDict()
  config.dfe.vocabulary = "auto"  # shared (the paper's), per_level; auto: shared if codebook is.
  config.dfe.weighting = "tfidf"  # tfidf, tf, binary, log; also used for the k-means tokens.
  config.dfe.ngram_max = 1  # 2 adds bigrams of consecutive valid steps within each level.
  config.dfe.min_video_count = 2  # Drop columns present in fewer videos (uses no labels).
  config.dfe.top_tokens = 10  # Tokens reported per label and direction.

  # dataset.json of the ingest folder the tokenizer trained on. Given, the frame baselines see what
  # the tokenizer saw: frames normalised with its statistics (subject-centred when it was), and
  # k-means fitted once on its training split. Empty: frames z-scored and k-means fitted inside
  # each outer training fold. results.json and results.md state which protocol ran.
  config.dataset = ""
  config.kmeans = ml_collections.ConfigDict()
  config.kmeans.num_codes = 0  # 0 = the DFE codebook size, so both vocabularies match.
  config.kmeans.max_fit_frames = 20_000  # Frames sampled for each k-means fit.

  config.au = ml_collections.ConfigDict()
  config.au.occurrence_threshold = 1.0  # Intensity (0-5) at which an AU counts as present.

  config.cv = ml_collections.ConfigDict()
  config.cv.folds = 5
  config.cv.repeats = 3
  config.cv.inner_folds = 3
  config.cv.seed = 0
  config.workers = 2  # Processes scoring outer folds (-1 = all cores); the numbers do not change.

  config.model = ml_collections.ConfigDict()
  config.model.logistic_c_grid = (0.001, 0.01, 0.1, 1.0)
  config.model.ridge_alpha_grid = (1.0, 10.0, 100.0, 1000.0)
  config.model.max_iter = 2000

  if arg == "smoke":
    config.cv.folds = 3
    config.cv.repeats = 1
  elif arg:
    raise ValueError(f"configs/probe.py: unknown argument '{arg}' (known: smoke)")
  config.lock()
  return config
