"""Properties of the residual quantizer that training and tokenization rely on."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dfe_jax.models import quantizer as vq
from dfe_jax.models import residual_vq
from tolerances import assert_close_f32  # pylint: disable=g-bad-import-order
from tolerances import assert_codes_equal_except_ties
from tolerances import assert_tree_close_f32
from tolerances import codes_of_differing_rows
from tolerances import f32_rtol


def _rvq(**overrides):
  fields = dict(num_levels=3, codebook_size=16, code_dim=8, shared_codebook=True,
                dead_code_threshold=0.0, kmeans_iters=5)
  fields.update(overrides)
  return residual_vq.ResidualVQ(**fields)


@functools.partial(jax.jit, static_argnums=0)
def _init(module, z_BTD, mask_BT, seed=0):
  """Module variables with codebooks k-means-fitted to z (jitted: eager dispatch is slow)."""
  variables = module.init({"params": jax.random.PRNGKey(seed)}, z_BTD, mask_BT)
  _, updates = module.apply(variables, z_BTD, mask_BT, method="kmeans_init",
                            rngs={"vq": jax.random.PRNGKey(seed + 1)},
                            mutable=["vq_stats", "params"])
  return dict(variables, **updates)


@functools.partial(jax.jit, static_argnums=0)
def _train_apply(module, variables, z_BTD, mask_BT, seed):
  """One train-mode call: ((z_q, aux), {"vq_stats": updated})."""
  return module.apply(variables, z_BTD, mask_BT, train=True, rngs={"vq": jax.random.PRNGKey(seed)},
                      mutable=["vq_stats"])


def test_nearest_code_matches_brute_force_numpy():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(500, 12)).astype(np.float32) * 3
  codebook = rng.normal(size=(64, 12)).astype(np.float32) * 3
  got = np.asarray(vq.nearest_code(x, codebook))
  d = ((x[:, None, :].astype(np.float64) - codebook[None].astype(np.float64)) ** 2).sum(-1)
  want = d.argmin(1)
  # Only a float32 near-tie may pick a different code (at most 1% of rows), and then one at the
  # same distance within float32 rounding.
  assert_codes_equal_except_ties(got[:, None], want[:, None], x, x, codebook[None])


def test_exact_ties_pick_the_lowest_index_for_l2_and_cosine():
  rng = np.random.default_rng(0)
  codebook = rng.normal(size=(64, 8)).astype(np.float32)
  codebook[40] = codebook[7]
  codebook[50] = codebook[7]
  x = np.concatenate([rng.normal(size=(500, 8)), codebook[[7, 40, 3]],
                      1e3 * rng.normal(size=(20, 8))]).astype(np.float32)
  for cosine in (False, True):
    got = np.asarray(vq.nearest_code(x, codebook, cosine=cosine))
    if cosine:
      xs = x / np.linalg.norm(x, axis=1, keepdims=True)
      cs = codebook / np.linalg.norm(codebook, axis=1, keepdims=True)
      d = -(xs.astype(np.float64) @ cs.T.astype(np.float64))
    else:
      d = ((x[:, None].astype(np.float64) - codebook[None].astype(np.float64)) ** 2).sum(-1)
    assert_codes_equal_except_ties(got[:, None], d.argmin(1)[:, None], x, x, codebook[None],
                                   cosine=cosine)
    assert got[500] == got[501] == 7 and got[502] == 3


def test_cosine_lookup_matches_brute_force_numpy():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(200, 6)).astype(np.float32)
  codebook = rng.normal(size=(32, 6)).astype(np.float32) * rng.uniform(0.1, 5, size=(32, 1))
  got = np.asarray(vq.nearest_code(x, codebook, cosine=True))
  sim = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float64) @ (
      codebook / np.linalg.norm(codebook, axis=1, keepdims=True)).T.astype(np.float64)
  assert_codes_equal_except_ties(got[:, None], sim.argmax(1)[:, None], x, x, codebook[None],
                                 cosine=True)


def test_straight_through_gradient_reaches_encoder_unchanged():
  module = _rvq()
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 8))
  mask = jnp.ones((2, 5), bool)
  variables = _init(module, z, mask)
  w = jax.random.normal(jax.random.PRNGKey(1), z.shape)

  def decoder_loss(z_BTD):
    zq, _ = module.apply(variables, z_BTD, mask)
    return jnp.sum(w * zq)

  np.testing.assert_allclose(jax.jit(jax.grad(decoder_loss))(z), w, rtol=1e-6)


@pytest.mark.parametrize("shared", [True, False])
def test_every_level_receives_commitment_gradient(shared):
  module = _rvq(num_levels=4, shared_codebook=shared)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 32, 8))  # More latents than codes.
  mask = jnp.ones((4, 32), bool)
  variables = _init(module, z, mask)

  def level_commits(z_BTD):
    aux = module.apply(variables, z_BTD, mask)[1]
    return jnp.stack([aux[f"vq/level{level}/commit"] for level in range(4)])

  jacobian_LBTD = jax.jit(jax.jacrev(level_commits))(z)
  for level in range(4):
    grad = jacobian_LBTD[level]
    assert float(jnp.abs(grad).sum()) > 1e-6, f"level {level} commitment has no gradient"


@pytest.mark.parametrize("shared", [True, False])
def test_reconstruction_error_does_not_increase_with_levels(shared):
  z = jax.random.normal(jax.random.PRNGKey(0), (1024, 6))
  weight = jnp.ones(1024)
  num_books = 1 if shared else 4
  kmeans = jax.jit(vq.kmeans_codebooks, static_argnums=(3, 4, 5, 6))
  codebooks, _ = kmeans(jax.random.PRNGKey(1), z, weight, num_books, 32, 4, 10)
  _, _, quantized = jax.jit(vq.residual_quantize, static_argnums=2)(z, codebooks, 4)
  prefix = jnp.cumsum(quantized, axis=1)
  errors = np.asarray(jnp.mean((z[:, None, :] - prefix) ** 2, axis=(0, 2)))
  # Non-increasing up to the float32 rounding of a mean of 1024 x 6 squares.
  assert np.all(np.diff(errors) <= f32_rtol(z.size) * errors[:-1]), errors
  assert errors[-1] < 0.5 * errors[0], errors


def test_ema_update_matches_hand_computed_numpy():
  decay, eps = 0.9, 1e-5
  codebook = np.array([[0.0, 0.0], [1.0, 1.0], [5.0, -5.0]], np.float32)
  count = np.array([1.0, 2.0, 0.5], np.float32)
  ema_sum = codebook * count[:, None]
  x = np.array([[0.2, 0.0], [0.0, -0.2], [0.9, 1.2], [1.1, 0.7], [0.1, 0.1]], np.float32)
  codes = np.array([[0], [0], [1], [1], [0]], np.int32)
  valid = np.array([1, 1, 1, 1, 0], np.float32)  # The last row is padding.
  counts_ck, sums_cke = vq.batch_statistics(x[:, None, :], codes, valid, 1, 3)
  new_codebook, new_count, new_sum = vq.ema_update(count[None], ema_sum[None], counts_ck, sums_cke,
                                                   decay, eps)
  # By hand: code 0 got rows 0,1; code 1 got rows 2,3; code 2 nothing; row 4 ignored.
  want_count = decay * count + (1 - decay) * np.array([2.0, 2.0, 0.0])
  want_sum = decay * ema_sum + (1 - decay) * np.array([[0.2, -0.2], [2.0, 1.9], [0.0, 0.0]])
  n = want_count.sum()
  smoothed = (want_count + eps) / (n + 3 * eps) * n
  np.testing.assert_allclose(np.asarray(counts_ck)[0], [2.0, 2.0, 0.0])
  np.testing.assert_allclose(np.asarray(new_count)[0], want_count, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new_sum)[0], want_sum, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(new_codebook)[0], want_sum / smoothed[:, None], rtol=1e-5)
  # An unused code keeps its value (its sum and count decay together).
  np.testing.assert_allclose(np.asarray(new_codebook)[0, 2], codebook[2], rtol=1e-4)


def test_revived_dead_code_is_not_overwritten_by_next_update():
  decay, threshold, reset = 0.99, 2.0, 4.0
  codebook = jnp.array([[[0.0, 0.0], [3.0, 3.0], [-50.0, 50.0]]])
  count = jnp.array([[10.0, 10.0, 0.5]])  # Code 2 is dead.
  ema_sum = codebook * count[..., None]
  candidates = jnp.array([[[7.0, -7.0], [7.0, -7.0], [99.0, 99.0]]])
  cand_weight = jnp.array([[1.0, 1.0, 0.0]])  # The masked candidate must never be drawn.
  codebook, count, ema_sum, dead = vq.restart_dead_codes(
      jax.random.PRNGKey(0), codebook, count, ema_sum, candidates, cand_weight, threshold, reset)
  np.testing.assert_array_equal(dead, [[False, False, True]])
  np.testing.assert_allclose(codebook[0, 2], [7.0, -7.0])
  np.testing.assert_allclose(codebook[0, :2], [[0.0, 0.0], [3.0, 3.0]])
  # Next step: a batch that does not use the revived code.
  x = jnp.array([[0.1, 0.0], [3.0, 2.9]])
  codes = jnp.array([[0], [1]])
  counts_ck, sums_cke = vq.batch_statistics(x[:, None], codes, jnp.ones(2), 1, 3)
  new_codebook, new_count, _ = vq.ema_update(count, ema_sum, counts_ck, sums_cke, decay, 1e-5)
  np.testing.assert_allclose(new_codebook[0, 2], [7.0, -7.0], rtol=1e-3)
  assert float(new_count[0, 2]) >= threshold  # Survives the next restart check too.
  # Without the reset (espnet#6284) the stale sum would have dragged it back towards (-50, 50).


def test_quantizer_dropout_can_choose_every_cutoff():
  keys = jax.random.split(jax.random.PRNGKey(0), 400)
  per_batch = jax.vmap(lambda k: vq.sample_num_active_levels(k, 4, 5, 1.0, False))(keys)
  assert set(np.asarray(per_batch).ravel().tolist()) == {1, 2, 3, 4, 5}
  assert np.all(per_batch == per_batch[:, :1])  # One cutoff for the whole batch.
  per_example = vq.sample_num_active_levels(jax.random.PRNGKey(1), 400, 5, 1.0, True)
  assert set(np.asarray(per_example).tolist()) == {1, 2, 3, 4, 5}
  never = jax.vmap(lambda k: vq.sample_num_active_levels(k, 4, 5, 0.0, False))(keys)
  assert np.all(never == 5)


def test_dropped_levels_are_minus_one_prefixes_in_train_mode():
  module = _rvq(num_levels=4, dropout_prob=1.0, dropout_per_example=True)
  z = jax.random.normal(jax.random.PRNGKey(0), (64, 3, 8))
  mask = jnp.ones((64, 3), bool)
  variables = _init(module, z, mask)
  (_, aux), _ = _train_apply(module, variables, z, mask, 5)
  kept = np.asarray(aux["codes"] >= 0)
  assert np.all(kept[..., 0]), "the first level is never dropped"
  assert np.all(kept[..., 1:] <= kept[..., :-1]), "kept levels form a prefix"
  per_example = kept.sum(-1)
  assert np.all(per_example == per_example[:, :1]), "one cutoff per example"
  assert set(per_example[:, 0].tolist()) == {1, 2, 3, 4}


def test_kmeans_init_puts_codes_on_data_clusters():
  centres = jnp.array([[10.0, 0, 0, 0], [0, 10.0, 0, 0], [0, 0, -10.0, 0], [0, 0, 0, 10.0]])
  noise = 0.1 * jax.random.normal(jax.random.PRNGKey(0), (4, 100, 4))
  z = (centres[:, None, :] + noise).reshape(1, 400, 4)
  mask = jnp.ones((1, 400), bool).at[0, :50].set(False)
  module = _rvq(num_levels=1, codebook_size=8, code_dim=4, kmeans_iters=10)
  variables = _init(module, z, mask)
  stats = variables["vq_stats"]
  assert bool(stats["initialised"])
  codebook = np.asarray(stats["codebook"][0])
  dist = np.linalg.norm(codebook[:, None, :] - np.asarray(centres)[None], axis=-1)
  assert np.all(dist.min(1) < 0.5), "every code sits on a cluster"
  assert np.all(dist.min(0) < 0.5), "every cluster has a code"
  # The EMA statistics agree with the codebook, so the first update does not jump.
  assert_close_f32(stats["codebook"] * stats["ema_count"][..., None], stats["ema_sum"],
                   f32_rtol(400, depth=2))  # Sums of <= 400 latents, divided and multiplied.
  assert float(stats["ema_count"].sum()) == pytest.approx(350.0)  # Masked frames not counted.


def test_masked_frames_do_not_move_the_codebook():
  module = _rvq(num_levels=3, dead_code_threshold=5.0, dropout_prob=0.5)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 8))
  mask = jnp.ones((4, 6), bool).at[1, 3:].set(False).at[3].set(False)
  variables = _init(module, z, mask)
  garbage = jnp.where(mask[..., None], z, 1e6)
  outputs = []
  for inputs in (z, garbage):
    (_, aux), updates = _train_apply(module, variables, inputs, mask, 3)
    outputs.append((aux, updates["vq_stats"]))
  (aux_a, stats_a), (aux_b, stats_b) = outputs
  jax.tree.map(np.testing.assert_array_equal, stats_a, stats_b)
  for key in aux_a:
    if key != "codes":
      np.testing.assert_array_equal(aux_a[key], aux_b[key], err_msg=key)
  assert int(aux_a["vq/counts_LK"][0].sum()) == int(mask.sum())
  assert not np.allclose(stats_a["codebook"], variables["vq_stats"]["codebook"])


def test_train_step_revives_dead_codes_with_batch_vectors():
  module = _rvq(num_levels=2, codebook_size=16, dead_code_threshold=1.0, dead_code_reset_count=2.0)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 8, 8))
  mask = jnp.ones((4, 8), bool)
  variables = module.init({"params": jax.random.PRNGKey(0)}, z, mask)
  # Push half the codes far away so they are never chosen, and mark them nearly dead.
  stats = dict(variables["vq_stats"])
  far = stats["codebook"].at[0, 8:].set(1e3)
  stats.update(codebook=far, ema_sum=far, ema_count=stats["ema_count"].at[0, 8:].set(0.5))
  (_, aux), updates = _train_apply(module, {"vq_stats": stats}, z, mask, 1)
  new = updates["vq_stats"]
  assert float(aux["vq/level0/dead_frac"]) >= 0.5
  assert float(new["ema_count"].min()) >= 1.0
  residual_pool = np.concatenate([np.asarray(z).reshape(-1, 8),
                                  np.asarray(z).reshape(-1, 8) - np.asarray(far[0])[
                                      np.asarray(aux["codes"][..., 0]).reshape(-1)]])
  for code in np.asarray(new["codebook"][0, 8:]):
    assert np.min(np.abs(residual_pool - code).max(1)) < 1e-5, "revived from a batch vector"


def test_decode_skips_minus_one_levels():
  codebooks = jax.random.normal(jax.random.PRNGKey(0), (3, 10, 4))
  z = jax.random.normal(jax.random.PRNGKey(1), (20, 4))
  codes, _, quantized = vq.residual_quantize(z, codebooks, 3)
  np.testing.assert_allclose(vq.lookup_codes(codes, codebooks), quantized, rtol=1e-6)
  skipped = codes.at[:, 2].set(-1)
  np.testing.assert_allclose(vq.lookup_codes(skipped, codebooks).sum(1),
                             quantized[:, :2].sum(1), rtol=1e-6)


def test_gradient_learned_codebook_gets_codebook_loss_gradient_and_kmeans_init():
  module = _rvq(learning="gradient", shared_codebook=False, lookup_dim=4, cosine=True)
  z = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8))
  mask = jnp.ones((2, 8), bool)
  variables = module.init({"params": jax.random.PRNGKey(0)}, z, mask)
  fitted = _init(module, z, mask)
  assert bool(fitted["vq_stats"]["initialised"])
  assert not np.allclose(fitted["params"]["codebook"], variables["params"]["codebook"])

  def codebook_loss(params):
    return module.apply(dict(fitted, params=params), z, mask)[1]["codebook_loss"]

  grads = jax.jit(jax.grad(codebook_loss))(fitted["params"])
  assert float(jnp.abs(grads["codebook"]).sum()) > 0


def test_orthogonality_loss_and_usage_metrics():
  eye = jnp.eye(4)[None]
  assert float(vq.orthogonality_loss(eye)) == pytest.approx(0.0, abs=1e-7)
  same = jnp.ones((1, 4, 3))
  assert float(vq.orthogonality_loss(same)) == pytest.approx(1.0, rel=1e-5)
  active = jnp.array([[True, True, False, False]])
  mixed = eye.at[0, 2].set(eye[0, 0])
  assert float(vq.orthogonality_loss(mixed, active)) == pytest.approx(0.0, abs=1e-7)
  counts = np.array([[5, 5, 5, 5], [8, 0, 0, 0]])
  for c in (counts, jnp.asarray(counts)):
    m = vq.usage_metrics_from_counts(c)
    assert float(m["vq/level0/perplexity"]) == pytest.approx(4.0, rel=1e-5)
    assert float(m["vq/level0/usage"]) == 1.0
    assert float(m["vq/level1/perplexity"]) == pytest.approx(1.0)
    assert float(m["vq/level1/usage"]) == 0.25


def test_jit_and_eager_agree_in_train_mode():
  module = _rvq(num_levels=3, dead_code_threshold=5.0, dropout_prob=0.5)
  z = jax.random.normal(jax.random.PRNGKey(0), (4, 6, 8))
  mask = jnp.ones((4, 6), bool).at[2, 4:].set(False)
  variables = _init(module, z, mask)
  (zq_j, aux_j), stats_j = _train_apply(module, variables, z, mask, 3)
  (zq_e, aux_e), stats_e = module.apply(variables, z, mask, train=True,
                                        rngs={"vq": jax.random.PRNGKey(3)}, mutable=["vq_stats"])
  # Both quantize the same z; fused and unfused distances may only flip a float32 near-tie.
  codes_e, codes_j = (np.asarray(a["codes"]).reshape(-1, 3) for a in (aux_e, aux_j))
  flat_z = np.asarray(z).reshape(-1, 8)
  assert_codes_equal_except_ties(codes_e, codes_j, flat_z, flat_z,
                                 variables["vq_stats"]["codebook"])
  # z_q and the EMA statistics (sums of <= 24 latents over 3 levels) of the rows and codes that
  # no flipped tie touched.
  same = (codes_e == codes_j).all(1)
  assert_close_f32(np.asarray(zq_e).reshape(-1, 8)[same], np.asarray(zq_j).reshape(-1, 8)[same],
                   f32_rtol(24, depth=3))
  kept = ~codes_of_differing_rows(codes_e, codes_j, 16)
  per_code = lambda stats: jax.tree.map(lambda a: np.asarray(a)[:, kept] if np.ndim(a) > 1 else a,
                                        stats)
  assert_tree_close_f32(per_code(stats_e), per_code(stats_j), f32_rtol(24, depth=3))
