"""Trains the temporal conv RVQ-VAE (6 levels sharing one 512-code EMA codebook) on expressions.

The main job's model: 64-frame windows of FLAME-53 features, one latent step per frame (the
ablation's choice for display discovery, docs/ablation.md), code_dim 128, velocity loss, k-means
init on the first global batch, dead-code restart, quantizer dropout.
Command: `python -m dfe_jax.train --config=configs/rvq.py --workdir=runs/rvq --data_dir=SHARDS`.
`configs/rvq.py:demo` is the main job's run (width 128, 300 steps of 128 windows, a few minutes
on a 2-core CPU); `configs/rvq.py:smoke` trains for seconds (a check that everything runs, not a
model). `:reference` (width 256, 3000 steps of 256 windows, 4x temporal downsampling) is the
PyTorch speed reference's architecture, which the benchmarks time (docs/performance.md), and
`:reference_demo` its main-job size.

`config.model` keys (read by `dfe_jax.models.get_model`):
  name                     "temporal_conv" | "frame_transformer"
  feature_dim              F, input features per frame (the trainer sets it from dataset.json)
  code_dim                 D, encoder output / latent size
  width                    conv channels (transformer width for frame_transformer)
  downsample_log2          latent steps = frames / 2**downsample_log2 (0 for frame_transformer)
  dtype                    compute dtype of encoder/decoder: "float32" on CPU (XLA:CPU runs
                           bfloat16 no faster), "bfloat16" on TPU and GPU. Parameters,
                           optimizer state, the quantizer (codebook, EMA statistics, distances)
                           and losses stay float32; tokenize and export run in float32
  conv_impl                "auto" | "xla" | "xla_cpu": the temporal convs' kernels. "xla" is the
                           plain model (XLA's conv gradients, cuDNN's on GPU); "xla_cpu" the
                           XLA:CPU kernels of dfe_jax/models/xla_cpu/ (same parameters and maths);
                           "auto" picks "xla_cpu" on the CPU backend, else "xla"
  decoder                  "network" (the default when absent: the model's own decoder) |
                           "additive" (dfe_jax/models/additive_decoder.py: frames = W sum_l c_{k_l},
                           a token is a deformation; configs/ablation.py's `additive` variants)
  prefix_metrics_in_train  also compute recon/prefix{l}_mse in train mode (L extra decoder passes)
  conv.kernel_size         stem, residual and output conv kernel
  conv.down_kernel         strided downsampling conv kernel (stride 2)
  conv.dilations           residual stack dilations (depth = len), also used by the decoder
  transformer.*            subvector_dim, num_layers, num_heads, mlp_dim (frame_transformer only)
  quantizer.kind           "rvq" | "none" (continuous latent, the no-discretisation baseline)
  quantizer.num_levels     L residual levels
  quantizer.codebook_size  K codes per codebook
  quantizer.shared_codebook one codebook for all levels (the paper's choice) or one per level
  quantizer.lookup_dim     > 0: quantize in a projected space of this size
  quantizer.cosine         assign codes by cosine similarity
  quantizer.learning       "ema" (codebook in vq_stats) | "gradient" (codebook is a parameter)
  quantizer.ema_decay, ema_eps          EMA decay and Laplace smoothing
  quantizer.dead_code_threshold         EMA count below which a code is restarted (0: never)
  quantizer.dead_code_reset_count       EMA count a revived code starts from
  quantizer.kmeans_iters   residual k-means iterations at initialisation
  quantizer.dropout_prob   probability of quantizer dropout (keep n ~ U{1..L} levels)
  quantizer.dropout_mode   "batch" (one cutoff per batch) | "example" (one per example)
  quantizer.ortho_active_only           orthogonality over codes used in the batch only

`config.loss` holds the weights of `dfe_jax.training.losses.total_loss`.
"""

import ml_collections


def model_config(smoke=False):
  """The temporal conv RVQ-VAE of the performance benchmark (ref_torch) plus quantizer dropout."""
  model = ml_collections.ConfigDict()
  model.name = "temporal_conv"
  model.feature_dim = 53
  model.code_dim = 128
  model.width = 256
  model.downsample_log2 = 2
  model.dtype = "float32"
  model.conv_impl = "auto"
  model.prefix_metrics_in_train = False
  model.conv = ml_collections.ConfigDict(
      dict(kernel_size=3, down_kernel=4, dilations=(9, 3, 1)))
  model.transformer = ml_collections.ConfigDict(
      dict(subvector_dim=8, num_layers=2, num_heads=4, mlp_dim=256))
  model.quantizer = ml_collections.ConfigDict(dict(
      kind="rvq",
      num_levels=6,
      codebook_size=512,
      shared_codebook=True,
      lookup_dim=0,
      cosine=False,
      learning="ema",
      ema_decay=0.99,
      ema_eps=1e-5,
      dead_code_threshold=2.0,
      dead_code_reset_count=4.0,
      kmeans_iters=10,
      dropout_prob=0.2,  # MoMask's value; the paper's is not published.
      dropout_mode="batch",
      ortho_active_only=False,
  ))
  if smoke:
    model.code_dim = 16
    model.width = 32
    model.conv.dilations = (3, 1)
    model.quantizer.num_levels = 3
    model.quantizer.codebook_size = 32
    model.quantizer.kmeans_iters = 3
  return model


def loss_config():
  """Loss weights for `dfe_jax.training.losses.total_loss` (the ref_torch loss: recon + 0.02 commit + 0.5 vel)."""
  loss = ml_collections.ConfigDict()
  loss.recon_weight = 1.0
  loss.velocity_weight = 0.5
  loss.commit_weight = 0.02
  loss.codebook_weight = 1.0  # Only non-zero in effect when quantizer.learning == "gradient".
  loss.ortho_weight = 0.0
  loss.sparsity_weight = 0.0
  return loss


def train_config(smoke=False):
  """Data, optimisation, evaluation and checkpoint fields shared by every training config."""
  config = ml_collections.ConfigDict()
  config.data_dir = ""               # Folder with dataset.json and shards (or --data_dir).
  config.window_frames = 64
  config.window_stride = 32          # Training windows overlap by half.
  config.global_batch_size = 256     # Windows per step over all devices.
  config.shuffle_buffer = 4096       # Windows.
  config.seed = 0
  config.total_steps = 3000
  config.warmup_steps = 200
  config.learning_rate = 2e-3
  config.adam_b1 = 0.9
  config.adam_b2 = 0.99
  config.weight_decay = 1e-4
  config.grad_clip_norm = 1.0
  config.log_every_steps = 50
  config.eval_every_steps = 1000
  config.eval_split = "val"
  config.checkpoint_every_steps = 500
  config.keep_checkpoints = 3
  config.best_metric = "eval/recon_cosine"
  config.best_mode = "max"
  config.init_from = ""              # Another workdir: start from its params and codebooks.
  if smoke:
    config.global_batch_size = 16
    config.window_frames = 32
    config.window_stride = 16
    config.shuffle_buffer = 256
    config.total_steps = 20
    config.warmup_steps = 5
    config.log_every_steps = 5
    config.eval_every_steps = 10
    config.checkpoint_every_steps = 10
  return config


def demo_overrides(config):
  """The main job's run: the reference architecture at width 128, sized for ~3 minutes here."""
  config.model.width = 128
  config.global_batch_size = 128
  config.total_steps = 300
  config.warmup_steps = 50
  config.eval_every_steps = 150
  config.checkpoint_every_steps = 150
  return config


def discovery_overrides(config):
  """The default chosen by the ablation (docs/ablation.md): one latent step per frame. Over 3
  seeds it recovers all 16 displays of the synthetic corpus (mean best cosine 0.971 against
  0.923 for 4x downsampling) at higher held-out reconstruction cosine (0.976 against 0.941)."""
  config.model.downsample_log2 = 0
  return config


ARGS = ("demo", "smoke", "reference", "reference_demo")


def get_config(arg=None):
  """Config for the RVQ-VAE. `arg`: None (full), "demo" (the main job), "smoke" (seconds);
  "reference" and "reference_demo" keep the 4x-downsampling architecture of the PyTorch speed
  reference (../shared/bench/ref_torch/), which the speed benchmarks time."""
  if arg not in (None, "") + ARGS:
    raise ValueError(f"configs/rvq.py: unknown argument {arg!r} (known: {', '.join(ARGS)})")
  smoke = arg == "smoke"
  config = train_config(smoke)
  config.model = model_config(smoke)
  config.loss = loss_config()
  if arg in ("demo", "reference_demo"):
    config = demo_overrides(config)
  return discovery_overrides(config) if arg in (None, "", "demo") else config


def sweep():
  """Overrides for a hyperparameter sweep, one dict per run (feed them to your launcher as
  `--config.<key>=<value>` flags): codebook size x levels, the paper's main ablation axis."""
  return [{"model.quantizer.codebook_size": k, "model.quantizer.num_levels": l}
          for k in (128, 512, 2048) for l in (1, 3, 6)]
