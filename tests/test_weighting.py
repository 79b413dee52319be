"""Tests of mtlcore.weighting: each method against its formula in numpy, and each inside the
joint trainer (compiled, logged, checkpointed, resumed exactly)."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import weighting
from mtlcore.toy.data import toy_dataset
from mtlcore.errors import ConfigError
from mtlcore.toy.network import build_toy_model, toy_tasks
from mtlcore.optimizers import Adam
from mtlcore.trainers import JointTrainer
from mtlcore.trainers.config import RunConfig


def _numpy_pcgrad(grads, orders):
  out = []
  for i, g in enumerate(grads):
    g = g.copy()
    for j in orders[i]:
      dot = g @ grads[j]
      if dot < 0:
        g -= dot / (grads[j] @ grads[j]) * grads[j]
    out.append(g)
  return np.sum(out, axis=0)


def test_pcgrad_leaves_non_conflicting_gradients_alone():
  grads = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]], np.float32)  # dot = 0.5 > 0
  got = weighting.pcgrad(tf.constant(grads), tf.constant([[1], [0]]))
  np.testing.assert_allclose(got, grads.sum(0), rtol=1e-6)


def test_pcgrad_removes_the_conflicting_component():
  grads = np.array([[1.0, 0.0], [-1.0, 1.0]], np.float32)  # dot = -1
  got = weighting.pcgrad(tf.constant(grads), tf.constant([[1], [0]])).numpy()
  # g1 - (-1/2) g2 = [0.5, 0.5]; g2 - (-1/1) g1 = [0, 1]: each now orthogonal to the other.
  np.testing.assert_allclose(got, [0.5, 1.5], rtol=1e-6)
  np.testing.assert_allclose(got, _numpy_pcgrad(grads, [[1], [0]]), rtol=1e-6)


def test_pcgrad_matches_numpy_with_three_tasks_in_a_given_order():
  rng = np.random.default_rng(0)
  grads = rng.normal(size=(3, 7)).astype(np.float32)
  orders = [[2, 1], [0, 2], [1, 0]]
  got = weighting.pcgrad(tf.constant(grads), tf.constant(orders))
  np.testing.assert_allclose(got, _numpy_pcgrad(grads.astype(np.float64), orders), rtol=1e-5)


def test_uncertainty_weights_and_total_match_the_formula():
  losses, s = np.array([2.0, 0.5, 9.0]), np.array([0.3, -1.0, 2.0])
  labelled = np.array([True, True, False])
  total, weights = weighting.uncertainty_total(
      tf.constant(losses, tf.float32), tf.constant(s, tf.float32), tf.constant(labelled))
  np.testing.assert_allclose(weights, np.exp(-s), rtol=1e-6)
  want = sum(np.exp(-s[k]) * losses[k] + s[k] / 2 for k in range(2))  # Task 3 unlabelled.
  np.testing.assert_allclose(total, want, rtol=1e-6)


def test_gls_is_the_geometric_mean_and_its_weights_its_gradient():
  losses = tf.constant([2.0, 0.5, 9.0])
  labelled = tf.constant([True, True, False])
  with tf.GradientTape() as tape:
    tape.watch(losses)
    total, weights = weighting.gls_total(losses, labelled)
  np.testing.assert_allclose(total, np.sqrt(2.0 * 0.5), rtol=1e-6)  # Task 3 unlabelled.
  np.testing.assert_allclose(weights, tape.gradient(total, losses), rtol=1e-6)
  np.testing.assert_allclose(weights, [1.0 / 4.0, 1.0, 0.0], rtol=1e-6)  # total / (m L_k)
  none, _ = weighting.gls_total(losses, tf.zeros([3], tf.bool))
  assert float(none) == 0.0


def test_dwa_weights_match_the_formula():
  means = np.array([[2.0, 1.0], [1.0, 0.9]])  # Task 1 fell by half, task 2 by a tenth.
  got = weighting.dwa_weights(tf.constant(means, tf.float32), 2.0).numpy()
  r = means[1] / means[0]
  want = 2 * np.exp(r / 2) / np.exp(r / 2).sum()
  np.testing.assert_allclose(got, want, rtol=1e-6)
  assert got[1] > got[0] and np.isclose(got.sum(), 2.0)


def _cagrad_objective(w, grads, c):
  g0 = grads.mean(0)
  return w @ grads @ g0 + c * np.linalg.norm(g0) * np.linalg.norm(w @ grads)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cagrad_solves_its_inner_problem_and_follows_its_formula(seed):
  rng = np.random.default_rng(seed)
  grads = rng.normal(size=(2, 5))
  grads[1] -= 1.2 * grads[0]  # A conflict.
  c = 0.5
  direction, w = weighting.cagrad(tf.constant(grads, tf.float32), c)
  direction, w = direction.numpy(), w.numpy()
  grid = np.linspace(0, 1, 20001)
  best = min(_cagrad_objective(np.array([a, 1 - a]), grads, c) for a in grid)
  assert np.isclose(w.sum(), 1.0, atol=1e-5) and (w >= 0).all()
  assert _cagrad_objective(w, grads, c) <= best + 1e-4 * abs(best) + 1e-6
  g0, gw = grads.mean(0), w @ grads
  want = 2 * (g0 + c * np.linalg.norm(g0) / np.linalg.norm(gw) * gw) / (1 + c * c)
  np.testing.assert_allclose(direction, want, rtol=1e-4, atol=1e-6)


def test_cagrad_with_radius_zero_is_the_gradient_of_the_sum():
  grads = np.array([[1.0, -2.0, 0.5], [-3.0, 1.0, 2.0]], np.float32)
  direction, _ = weighting.cagrad(tf.constant(grads), 0.0)
  np.testing.assert_allclose(direction, grads.sum(0), rtol=1e-5)


@pytest.mark.parametrize("method", ["cagrad", "pcgrad", "upgrad"])
def test_a_task_without_labels_takes_no_part_in_a_gradient_method(method):
  """An unlabelled task's row is zero; given the labelled mask, the method gives the update
  it gives on the labelled tasks' rows alone, and the unlabelled task no weight (CAGrad's
  zero row would otherwise draw all its simplex weight: F(e_j) = 0)."""
  rng = np.random.default_rng(3)
  grads = rng.normal(size=(3, 6)).astype(np.float32)
  grads[1] -= 1.5 * grads[0]  # A conflict among the labelled tasks.
  with_gap = np.insert(grads, 1, 0.0, axis=0)  # Task 1 (of 4) has no label.
  labelled = tf.constant([True, False, True, True])
  make = lambda k: weighting.make_weighting(method, [f"t{i}" for i in range(k)])
  seed = tf.constant([0, 0], tf.int64)
  got, weights = make(4).combine_gradients(tf.constant(with_gap), seed, labelled)
  want, want_weights = make(3).combine_gradients(tf.constant(grads), seed,
                                                 tf.ones([3], tf.bool))
  if method != "pcgrad":  # PCGrad's random orders differ between K = 3 and K = 4.
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)
  if method == "cagrad":
    assert weights.numpy()[1] == 0.0
    np.testing.assert_allclose(np.delete(weights.numpy(), 1) / 4, want_weights.numpy() / 3,
                               atol=1e-5)
  if method == "pcgrad":  # With two labelled tasks there is one order: compare exactly.
    two = with_gap[[0, 1, 2]]
    got, _ = make(3).combine_gradients(tf.constant(two), seed, tf.constant([True, False, True]))
    want, _ = make(2).combine_gradients(tf.constant(grads[:2]), seed, tf.ones([2], tf.bool))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


def test_gradnorm_weight_gradient_matches_its_formula():
  w, norms, ratios = np.array([1.2, 0.8]), np.array([2.0, 0.5]), np.array([0.9, 0.6])
  got = weighting.gradnorm_weight_gradient(
      *(tf.constant(a, tf.float32) for a in (w, norms, ratios)), 1.5).numpy()
  g = w * norms
  target = g.mean() * (ratios / ratios.mean()) ** 1.5
  np.testing.assert_allclose(got, np.sign(g - target) * norms, rtol=1e-6)
  # Task 1 has the larger weighted gradient and trains faster: its weight is pushed down.
  assert got[0] > 0 > got[1]


def test_gradnorm_leaves_an_unlabelled_task_out_of_its_means():
  w, norms, ratios = [1.2, 0.8, 1.0], [2.0, 0.5, 0.0], [0.9, 0.6, 0.0]
  got = weighting.gradnorm_weight_gradient(
      *(tf.constant(a, tf.float32) for a in (w, norms, ratios)), 1.5,
      tf.constant([True, True, False])).numpy()
  alone = weighting.gradnorm_weight_gradient(
      *(tf.constant(a[:2], tf.float32) for a in (w, norms, ratios)), 1.5).numpy()
  np.testing.assert_allclose(got[:2], alone, rtol=1e-6)  # As if task 3 were not there.
  assert got[2] == 0.0


def _numpy_famo(theta, matrices, targets, masks, alpha, learning_rate=0.025, gamma=0.01):
  """FAMO (Liu et al. 2023, Algorithm 1, and the authors' torch code) on the losses
  L_k = 1/2 |A_k theta - b_k|^2 + 0.1, by SGD at rate `alpha`, in float64; masks [steps][K]
  (an unlabelled task sits out the softmax, its logit and its Adam state stay)."""
  eps, k = 1e-8, len(matrices)
  losses = lambda t: np.array([0.5 * np.sum((a @ t - b) ** 2) + 0.1
                               for a, b in zip(matrices, targets)])
  grads = lambda t: np.array([a.T @ (a @ t - b) for a, b in zip(matrices, targets)])
  xi, m, v, count = np.zeros(k), np.zeros(k), np.zeros(k), np.zeros(k)
  history = []
  for mask in masks:
    on = np.flatnonzero(mask)
    before = losses(theta)
    z = np.zeros(k)
    z[on] = np.exp(xi[on] - xi[on].max()) / np.exp(xi[on] - xi[on].max()).sum()
    c = 1.0 / np.sum(z[on] / (before[on] + eps))
    weights = c * z / (before + eps)
    theta = theta - alpha * weights @ grads(theta)
    delta = np.log(before + eps) - np.log(losses(theta) + eps)
    g = np.zeros(k)
    g[on] = z[on] * (delta[on] - z[on] @ delta[on]) + gamma * xi[on]
    m[on] = 0.9 * m[on] + 0.1 * g[on]
    v[on] = 0.999 * v[on] + 0.001 * g[on] ** 2
    count[on] += 1
    xi[on] -= learning_rate * (m[on] / (1 - 0.9 ** count[on])) / (
        np.sqrt(v[on] / (1 - 0.999 ** count[on])) + 1e-8)
    history.append((weights, xi.copy()))
  return theta, history


def test_famo_matches_its_algorithm_in_numpy_and_an_unlabelled_task_keeps_its_state():
  rng = np.random.default_rng(3)
  matrices = [rng.normal(size=(4, 3)) for _ in range(3)]
  targets = [rng.normal(size=4) for _ in range(3)]
  masks = [[True] * 3] * 3 + [[True, True, False]] + [[True] * 3] * 4
  theta0 = rng.normal(size=3)
  want_theta, want = _numpy_famo(theta0, matrices, targets, masks, alpha=0.05)

  famo = weighting.make_weighting("famo", ["a", "b", "c"])
  theta = tf.Variable(theta0, dtype=tf.float32)
  a = [tf.constant(x, tf.float32) for x in matrices]
  b = [tf.constant(x, tf.float32) for x in targets]
  losses = lambda: tf.stack([0.5 * tf.reduce_sum(tf.square(tf.linalg.matvec(x, theta) - y)) + 0.1
                             for x, y in zip(a, b)])
  for step, mask in enumerate(masks):
    labelled = tf.constant(mask)
    kept = [v.numpy()[2].copy() for v in famo.variables]
    with tf.GradientTape() as tape:
      before = losses()
      total, weights = famo.total(before, labelled)
    theta.assign_sub(0.05 * tape.gradient(total, theta))
    famo.after_step(before, labelled, losses_after=losses())
    np.testing.assert_allclose(weights, want[step][0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(famo.logits, want[step][1], rtol=1e-3, atol=1e-5)
    assert np.isclose(float(tf.reduce_sum(weights)), 1.0, atol=1e-5)  # Paper's scale.
    if not mask[2]:
      assert [v.numpy()[2] for v in famo.variables] == kept
  np.testing.assert_allclose(theta, want_theta, rtol=1e-4)
  assert famo.updates.numpy().tolist() == [8.0, 8.0, 7.0]
  assert np.ptp(famo.logits.numpy()) > 1e-3  # The tasks' weights moved apart.


def test_stch_follows_its_formula_and_its_warm_up_sets_the_nadir():
  """stch_total against numpy (its weights its gradient); the warm-up's objective is the sum
  of log-losses, and each task's nadir its mean loss over the warm-up's last epoch, counted
  only where it had a label."""
  losses = tf.constant([0.5, 2.0, 0.1, 3.0])
  nadir = tf.constant([1.0, 8.0, 0.5, 1.0])
  labelled = tf.constant([True, True, True, False])
  for mu in (1.0, 0.1):
    with tf.GradientTape() as tape:
      tape.watch(losses)
      total, weights = weighting.stch_total(losses, nadir, mu, labelled)
    l, z = losses.numpy()[:3].astype(np.float64), nadir.numpy()[:3].astype(np.float64)
    terms = np.log(l / z + weighting.LOG_EPSILON) / mu
    want = 3 * mu * np.log(np.exp(terms).sum())
    np.testing.assert_allclose(total, want, rtol=1e-5)
    np.testing.assert_allclose(weights, tape.gradient(total, losses), rtol=1e-5, atol=1e-7)
    assert weights.numpy()[3] == 0.0
  # As mu falls the total approaches 3 times the largest normalised log-loss (task 1: 0.5/1).
  np.testing.assert_allclose(weighting.stch_total(losses, nadir, 1e-3, labelled)[0],
                             3 * np.log(0.5 + weighting.LOG_EPSILON), rtol=1e-2)

  stch = weighting.make_weighting("stch", ["a", "b"], period=3,
                                  options={"warmup_epochs": 2, "mu": 0.5})
  rng = np.random.default_rng(4)
  seen = []
  for step in range(8):
    x = rng.random(2).astype(np.float32) + 0.5
    mask = np.array([True, step != 4])
    total, _ = stch.total(tf.constant(x), tf.constant(mask))
    if step < 6:  # The warm-up: 2 epochs of 3 steps.
      np.testing.assert_allclose(total, np.log(x[mask] + weighting.LOG_EPSILON).sum(),
                                 rtol=1e-6)
    else:
      want, _ = weighting.stch_total(tf.constant(x), tf.constant(nadir_want), 0.5,
                                     tf.constant(mask))
      np.testing.assert_allclose(total, want, rtol=1e-6)
    if step in (3, 4, 5):
      seen.append(np.where(mask, x, np.nan))
    stch.after_step(tf.constant(x), tf.constant(mask))
    nadir_want = np.nanmean(seen, axis=0) if seen else None
  np.testing.assert_allclose(stch.nadir(), nadir_want, rtol=1e-6)  # b: steps 3 and 5 only.


def test_cosines_to_the_rest_match_numpy():
  grads = np.array([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0], [-1.0, 1.0, 0.0]], np.float32)
  got = weighting.cosines_to_the_rest(tf.constant(grads)).numpy()
  for k in range(3):
    rest = grads.sum(0) - grads[k]
    want = grads[k] @ rest / np.linalg.norm(grads[k]) / np.linalg.norm(rest)
    np.testing.assert_allclose(got[k], want, rtol=1e-6)


def _trainer(method, seed=0, options=None):
  names = [t.name for t in toy_tasks()]
  return JointTrainer(model=build_toy_model(seed=seed), tasks=toy_tasks(), optimizer=Adam(0.01),
                      dataset=toy_dataset(512, batch_size=16, seed=seed),
                      weighting=weighting.make_weighting(method, names, period=8,
                                                         options=options), seed=seed)


def test_uncertainty_learns_its_log_variances_and_dwa_moves_off_one():
  trainer = _trainer("uncertainty")
  trainer.train(100)
  assert (np.abs(trainer.weighting.log_variances.numpy()) > 1e-3).all()
  dwa = _trainer("dwa")
  logs = dwa.train(40)  # Periods of 8 steps: weights leave 1 after the second period.
  assert int(dwa.weighting.periods.numpy()) == 5
  weights = dwa.weighting.current_weights().numpy()
  assert not np.allclose(weights, 1.0) and np.isclose(weights.sum(), 2.0, atol=1e-5)
  assert np.isfinite(logs.tasks["y1"].metrics["weight"])


def test_famo_in_the_joint_step_updates_its_logits_from_a_second_forward_pass():
  trainer = _trainer("famo")
  trainer.train(20)
  famo = trainer.weighting
  assert famo.updates.numpy().tolist() == [20.0, 20.0]
  assert np.all(famo.logits.numpy() != 0.0)
  with pytest.raises(ValueError, match="needs the losses after the update"):
    famo.after_step(tf.ones([2]), tf.constant([True, True]))


def test_gradnorm_moves_its_weights_and_keeps_their_sum():
  trainer = _trainer("gradnorm")
  trainer.train(50)
  weights = trainer.weighting.weights.numpy()
  assert not np.allclose(weights, 1.0) and np.isclose(weights.sum(), 2.0, atol=1e-5)
  assert [v.name for v in trainer.gradnorm_layer] == [
      v.name for v in trainer.model.trunk.trainable_variables]  # The toy trunk's one layer.


# One method per kind of state a weighting keeps: learned log-variances (uncertainty; imtl_l's
# and imtl's scales are the same kind), a loss history (dwa), learned weights and the first
# losses (gradnorm), draws from the step's seed (pcgrad; rlw's and graddrop's are the same
# kind), moving targets (gradvac), logits and their update count (famo), per-parameter moving
# averages [K, P] (db_mtl; moco's tracked gradients and simplex weights; excess_mtl's squared
# gradient sums and loss weights), warm-up loss sums read after the warm-up (stch: its 2 epochs of 8
# steps end after the checkpoint), simplex weights from three samples of the batch (modo;
# sdmgrad's are the same kind). The Gram methods keep none.
@pytest.mark.parametrize("method", ["uncertainty", "dwa", "gradnorm", "pcgrad", "gradvac",
                                    "famo", "db_mtl", "moco", "excess_mtl", "stch", "modo"])
def test_resume_from_a_checkpoint_is_bitwise_exact(method, tmp_path):
  """24 steps straight against a new trainer that restores the checkpoint of step 12."""
  options = {"warmup_epochs": 2} if method == "stch" else None
  straight = _trainer(method, options=options)
  straight.train(12)
  path = tf.train.Checkpoint(trainer=straight).write(str(tmp_path / "ckpt"))
  straight.train(12)

  resumed = _trainer(method, options=options)
  tf.train.Checkpoint(trainer=resumed).read(path).assert_consumed()
  resumed.train(12)
  for a, b in zip(straight.trainable_variables + straight.weighting.variables,
                  resumed.trainable_variables + resumed.weighting.variables):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)


def test_weighting_flags_are_checked_in_the_config():
  with pytest.raises(ConfigError, match="--weighting applies to --mode=joint"):
    RunConfig(task_set="toy", mode="alternate", weighting="pcgrad")
  with pytest.raises(ConfigError, match="--task_weights are static loss weights"):
    RunConfig(task_set="toy", weighting="dwa", task_weights=(1.0, 2.0))
  with pytest.raises(ConfigError, match="--weighting=static needs --task_weights"):
    RunConfig(task_set="toy", weighting="static")
  with pytest.raises(ConfigError, match="--weighting must be one of"):
    RunConfig(task_set="toy", weighting="no_such_method")
  with pytest.raises(ConfigError, match="--weighting_options: 'c=1' is not NAME=VALUE .* "
                                        "--weighting=mgda \\(it has: ridge\\)"):
    RunConfig(task_set="toy", weighting="mgda", weighting_options=("c=1",))
  with pytest.raises(ConfigError, match="beta must be in \\[0, 1\\]"):
    RunConfig(task_set="toy", weighting="gradvac", weighting_options=("beta=2",))
  with pytest.raises(ConfigError, match="temperature must be positive, got '0'"):
    weighting.make_weighting("dwa", ["a", "b"], options={"temperature": 0})
  assert RunConfig(task_set="toy", weighting="cagrad",
                   weighting_options=("c=0.2",)).weighting_options == ("c=0.2",)
  assert weighting.make_weighting("cagrad", ["a", "b"], options={"c": "0.2"}).c == 0.2


def test_staged_state_leaves_a_function_of_its_own_and_is_assigned_after_the_step():
  method = weighting.make_weighting("gradvac", ["a", "b"])
  grads = tf.constant([[1.0, 0.0], [0.5, 1.0]])

  @tf.function
  def aggregate():  # As the distributed step's compiled aggregation returns them.
    direction, _ = method.combine_gradients(grads, tf.constant([0, 1], tf.int64),
                                            tf.constant([True, True]))
    return direction, method.staged_values()

  _, staged = aggregate()
  (targets,) = staged
  assert targets.shape == (2, 2) and np.any(targets.numpy() != 0)  # beta-moved from zeros.
  method.restage([targets])
  method.after_step(tf.zeros([2]), tf.constant([True, True]))
  np.testing.assert_array_equal(method.targets.numpy(), targets.numpy())
  assert weighting.make_weighting("mgda", ["a", "b"]).staged_values() == []
  with pytest.raises(ValueError, match="restage: 2 values for 1 staged"):
    method.restage([targets, targets])


def test_a_loss_below_zero_by_rounding_keeps_the_logarithmic_methods_finite():
  """A float32 CRF loss can come out slightly below 0 (its log-normaliser minus its path
  score); db_mtl's and stch's logarithms clip it at 0 instead of turning NaN, and the
  clipped task takes no gradient from them."""
  losses = tf.constant([-3.7e-4, 0.5])
  labelled = tf.constant([True, True])
  db_mtl = weighting.make_weighting("db_mtl", ["a", "b"])
  with tf.GradientTape(persistent=True) as tape:
    tape.watch(losses)
    rows = db_mtl.task_losses(losses, labelled)
    total, weights = weighting.log_losses_total(losses, labelled)
    smooth, smooth_weights = weighting.stch_total(losses, tf.constant([1.0, 1.0]), 0.1,
                                                  labelled)
  for value in (rows, total, weights, smooth, smooth_weights):
    assert np.all(np.isfinite(value.numpy())), value
  np.testing.assert_allclose(tape.jacobian(rows, losses), [[0.0, 0.0], [0.0, 1 / 0.5]],
                             rtol=1e-6)
  assert np.isfinite(tape.gradient(smooth, losses).numpy()).all()
