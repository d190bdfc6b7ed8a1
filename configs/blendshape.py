"""Trains a small temporal conv RVQ-VAE on MediaPipe blendshapes (`arkit51`) from a few clips.

The real-data path of the README (extract -> ingest -> train -> tokenize -> report) on the five
test clips of `.ci/fetch_test_media.sh` (928 frames, 737 with a face; 3 people). Command
(ingested with `--fps=25 --normalize=subject`, one person held out as `val`):

  python -m dfe_jax.train --config=configs/blendshape.py --workdir=$PWD/runs/clips \
      --data_dir=data/clips_shards

(`$PWD/`: Orbax rejects a relative checkpoint path; see the README section.)
Expected runtime here: 49 s wall for 1000 steps of 16 windows (1 CPU device, load average 4.7
from other jobs on 2 cores; 25-45 steps/s between evals, the rest is start-up and compiling).
Expected result: training reconstruction MSE about 0.01 (z units: two training faces are soon
memorised); on the held-out person recon MSE about 4.5 against 5.4 for predicting that person's
mean (so ~17% of its variance), cosine about 0.34; level 1 uses ~29 of 32 codes. Five clips
cannot teach a face model: the run shows the path works and what tokens look like, nothing more.
`configs/blendshape.py:smoke` trains for seconds (the end-to-end test; a check, not a model).

The model is configs/rvq.py's (same keys, documented there) scaled to the data: a few hundred
training windows cannot fill 6 levels of 512 codes, and k-means on the first batch needs more
latent vectors than codes, so the codebook is small and the batch holds 16 windows
(16 x 32 frames / 4 = 128 latent vectors for 32 codes; an epoch is 79 windows). The global
batch divides by 1 and by the 8 fake devices of the tests.
"""

from dfe_jax.configs import rvq


def get_config(arg=None):
  """configs/rvq.py resized for ~1,000 blendshape frames; `arg` is None or "smoke" (seconds)."""
  if arg not in (None, "", "smoke"):
    raise ValueError(f"configs/blendshape.py: unknown argument {arg!r} (known: smoke)")
  smoke = arg == "smoke"
  config = rvq.get_config("reference")  # Its own sizes below; 4x downsampling, as tested.
  model = config.model
  model.feature_dim = 51  # The trainer sets it from dataset.json; 51 documents the input.
  model.width = 96
  model.code_dim = 32
  model.conv.dilations = (3, 1)  # Receptive field well inside a 32-frame window.
  q = model.quantizer
  q.num_levels = 3
  q.codebook_size = 32
  q.kmeans_iters = 10
  # EMA counts per code are small with 128 vectors a batch (4 per code on average): the default
  # threshold of 2 would keep restarting codes that are merely rare, so only revive dead ones.
  q.dead_code_threshold = 0.5
  q.dead_code_reset_count = 2.0

  config.window_frames = 32    # 1.3 s at 25 fps; the clips are 2.4-19 s long.
  config.window_stride = 8     # Dense overlap: 79 training windows an epoch here, not 24.
  config.global_batch_size = 16
  config.shuffle_buffer = 1024
  # The held-out person's error is flat from step ~250 on (two training faces are soon
  # memorised; 3000 steps only lowered the training loss): 1000 steps let the codes settle.
  config.total_steps = 1000
  config.warmup_steps = 50
  config.learning_rate = 2e-3
  config.log_every_steps = 100
  config.eval_every_steps = 250
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 2
  if smoke:
    model.width = 32
    model.code_dim = 16
    q.num_levels = 2
    q.codebook_size = 16
    q.kmeans_iters = 3
    config.global_batch_size = 8
    config.shuffle_buffer = 128
    config.total_steps = 20
    config.warmup_steps = 5
    config.log_every_steps = 5
    config.eval_every_steps = 20
    config.checkpoint_every_steps = 20
  return config


def sweep():
  """Overrides for a hyperparameter sweep, one dict per run (`--config.<key>=<value>` flags):
  codebook size x levels at this data size, configs/rvq.py's axis scaled down."""
  return [{"model.quantizer.codebook_size": k, "model.quantizer.num_levels": l}
          for k in (16, 32, 64) for l in (1, 2, 3)]
