"""The gradient methods of mtlcore.gradient_methods against their papers' algorithms written
in numpy, by their problems' optimality conditions, on near-parallel and exactly opposed
gradients, with unlabelled tasks, at K = 64, and compiled with XLA."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import bounded_quadratic
from mtlcore import choices
from mtlcore import gradient_methods as gm
from mtlcore import weighting
from mtlcore.choices import WEIGHTINGS
from mtlcore.layers import Linear
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.optimizers import Adam
from mtlcore.tasks import Task
from mtlcore.trainers import JointTrainer
from tests.test_keras_parts import _masked_squared

GRAM_METHODS = ["upgrad", "dualproj", "mgda", "imtl_g", "nash_mtl", "fairgrad", "aligned_mtl",
                "config"]
ALL = GRAM_METHODS + ["pcgrad", "gradvac", "cagrad", "imtl", "graddrop", "db_mtl", "moco",
                     "excess_mtl", "sdmgrad", "modo"]
SEED = tf.constant([3, 4], tf.int64)


def _conflicting(k, p=9, seed=0):
  rng = np.random.default_rng(seed)
  grads = rng.normal(size=(k, p))
  grads[1] = -0.9 * grads[0] + 0.2 * rng.normal(size=p)  # A conflict.
  return grads.astype(np.float32)


def _made(method, k, columns):
  """The Weighting `method` over K tasks, its per-parameter state (if any) built for
  `columns` shared parameters, as the joint trainer builds it."""
  made = weighting.make_weighting(method, [f"t{i}" for i in range(k)])
  made.build(columns)
  return made


def _samples(made, grads):
  """The rows a method combines: `grads` [K, P], as the same sample S times for a method of
  S samples (SDMGrad, MoDo: [3 K, P])."""
  return tf.tile(tf.convert_to_tensor(grads), [made.samples, 1])


def _combine(method, grads, labelled=None):
  k = grads.shape[0]
  method = _made(method, k, grads.shape[1])
  labelled = np.ones(k, bool) if labelled is None else labelled
  direction, weights = method.combine_gradients(_samples(method, grads), SEED,
                                                tf.constant(labelled))
  return direction.numpy().astype(np.float64), weights.numpy().astype(np.float64)


def _exact_box_qp(q, lower):
  """argmin u^T q u s.t. u >= lower by trying every active set (the enumeration mtlcore used
  before the iterative solver), in float64."""
  k = len(lower)
  best, best_value = None, np.inf
  for free in itertools.product([False, True], repeat=k):
    free = np.array(free)
    u = lower.astype(np.float64).copy()
    if free.any():
      rhs = -q[np.ix_(free, ~free)] @ lower[~free]
      u[free] = np.linalg.solve(q[np.ix_(free, free)], rhs)
    gradient = q @ u
    if (u < lower - 1e-12).any() or (gradient[~free] < -1e-9 * np.abs(q).max()).any():
      continue
    if u @ gradient < best_value:
      best, best_value = u, u @ gradient
  return best


# --------------------------------------------------------------------------- the solver


@pytest.mark.parametrize("k", [2, 3, 5, 6])
def test_the_iterative_solver_equals_the_exact_enumeration(k):
  rng = np.random.default_rng(k)
  for trial in range(4):
    grads = rng.normal(size=(k, 8))
    if trial == 1:
      grads[1] = -grads[0]  # Exactly opposed.
    if trial == 2:
      grads[1] = grads[0] * 1.001 + 1e-3 * rng.normal(size=8)  # Near-parallel.
    gram = grads @ grads.T
    q = gram + 1e-6 * gram.max() * np.eye(k)
    u = bounded_quadratic.solve(tf.constant(q), np.zeros((k, k)), np.eye(k)).numpy()
    exact = np.stack([_exact_box_qp(q, np.eye(k)[i]) for i in range(k)])
    np.testing.assert_allclose(u, exact, rtol=1e-5, atol=1e-5 * np.abs(exact).max())
    assert bounded_quadratic.residual(q, np.zeros((k, k)), np.eye(k), u) < 1e-8


def test_the_solver_converges_at_64_tasks_in_a_fixed_graph():
  rng = np.random.default_rng(0)
  grads = rng.normal(size=(64, 200))
  grads[32:] = -grads[:32] + 0.1 * rng.normal(size=(32, 200))  # Half of them conflict.
  gram = grads @ grads.T
  q = tf.constant(gram + 1e-6 * gram.max() * np.eye(64), tf.float32)
  # In a graph (XLA's compile of the same solve is test_every_method_runs_at_64_tasks_compiled).
  solve = tf.function(lambda q: bounded_quadratic.solve(q, tf.zeros([64, 64]), tf.eye(64)))
  u = solve(q)
  assert bounded_quadratic.residual(q, np.zeros((64, 64)), np.eye(64), u) < 1e-6


def test_the_swept_solver_meets_the_kkt_conditions_on_conflicting_rescaled_rows():
  """The active-set steps read their solves from Q swept on the free coordinates (rank-one
  updates, one refinement step): on 40 random problems (K 2-24, half the rows opposing the
  others, row norms spread over e^+-6) UPGrad's and MGDA's answers meet their KKT conditions
  to 1e-8 of their scale."""
  rng = np.random.default_rng(7)
  solve = bounded_quadratic.solve  # Eager: a trace per K would cost more than the loop.
  for trial in range(40):
    k = int(rng.integers(2, 25))
    grads = rng.normal(size=(k, 50))
    if trial % 2:
      grads[k // 2:] = -grads[:k - k // 2] + 0.05 * rng.normal(size=(k - k // 2, 50))
    grads *= np.exp(rng.uniform(-6, 6, size=(k, 1)))
    gram = grads @ grads.T
    q = tf.constant(gram + 1e-6 * gram.max() * np.eye(k))
    u = solve(q, np.zeros((k, k)), np.eye(k))
    assert bounded_quadratic.residual(q, np.zeros((k, k)), np.eye(k), u) < 1e-8, (trial, k)
    w = solve(q, -np.ones((1, k)), np.zeros((1, k)))
    assert bounded_quadratic.residual(q, -np.ones((1, k)), np.zeros((1, k)), w) < 1e-8


def _op_count(function, k):
  spec = tf.TensorSpec([k, 5], tf.float32)
  graph = tf.function(function).get_concrete_function(spec).graph
  return len(graph.as_graph_def().node)


@pytest.mark.parametrize("method", ALL)
def test_the_graph_does_not_grow_with_the_number_of_tasks(method):
  def at(k):
    made = _made(method, k, 5)
    return _op_count(lambda g: made.combine_gradients(_samples(made, g), SEED,
                                                      tf.ones([k], tf.bool)), k)
  assert at(4) == at(16)


# ----------------------------------------------------------------- each method, its paper


def test_upgrad_and_dualproj_never_conflict_and_reduce_to_the_sum():
  for method in ("upgrad", "dualproj"):
    for seed in range(4):
      grads = _conflicting(4, seed=seed)
      direction, _ = _combine(method, grads)
      assert (grads @ direction >= -1e-4 * np.abs(grads).max() ** 2).all(), method
    agreeing = np.array([[1.0, 2.0, 0.0], [0.5, 0.0, 3.0]], np.float32)
    direction, weights = _combine(method, agreeing)
    np.testing.assert_allclose(direction, agreeing.sum(0), rtol=1e-4)
    np.testing.assert_allclose(weights, [1.0, 1.0], rtol=1e-4)


def test_upgrad_equals_the_mean_of_the_exact_projections():
  grads = _conflicting(5, seed=7).astype(np.float64)
  gram = grads @ grads.T
  q = gram + 1e-6 * gram.max() * np.eye(5)
  weights = sum(_exact_box_qp(q, np.eye(5)[i]) for i in range(5))
  direction, got = _combine("upgrad", grads.astype(np.float32))
  np.testing.assert_allclose(got, weights, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(direction, grads.T @ weights, rtol=1e-4, atol=1e-5)


def _frank_wolfe_min_norm(gram, iterations=20000):
  """The MGDA paper's solver (Sener & Koltun 2018, Algorithm 2) in numpy."""
  k = len(gram)
  w = np.full(k, 1.0 / k)
  for _ in range(iterations):
    t = int(np.argmin(gram @ w))
    e = np.eye(k)[t]
    d = e - w
    denominator = d @ gram @ d
    if denominator <= 0:
      break
    gamma = np.clip(-(w @ gram @ d) / denominator, 0.0, 1.0)
    w = w + gamma * d
  return w


def _exact_min_norm(gram):
  """argmin_{w in simplex} w^T gram w, trying every support."""
  k = len(gram)
  best, best_value = None, np.inf
  for support in itertools.product([False, True], repeat=k):
    s = np.array(support)
    if not s.any():
      continue
    m = s.sum()
    system = np.block([[gram[np.ix_(s, s)], np.ones((m, 1))], [np.ones((1, m)), np.zeros((1, 1))]])
    try:
      solution = np.linalg.solve(system, np.concatenate([np.zeros(m), [1.0]]))
    except np.linalg.LinAlgError:
      continue
    w = np.zeros(k)
    w[s] = solution[:m]
    if (w >= -1e-12).all() and w @ gram @ w < best_value:
      best, best_value = w, w @ gram @ w
  return best


def test_mgda_is_the_min_norm_point_by_its_kkt_conditions_and_frank_wolfe():
  for seed in range(3):
    grads = _conflicting(4, seed=seed)
    direction, w = _combine("mgda", grads)
    gram = grads.astype(np.float64) @ grads.T
    assert np.isclose(w.sum(), 1.0) and (w >= 0).all()
    value = w @ gram @ w
    slopes = gram @ w  # KKT: >= value everywhere, = value where w > 0.
    scale = np.abs(gram).max()
    assert (slopes >= value - 1e-5 * scale).all()
    np.testing.assert_allclose(slopes[w > 1e-6], value, atol=1e-5 * scale)
    # The paper's Frank-Wolfe converges sublinearly: after 20,000 steps ours is no longer;
    # the exact min-norm point (every support tried) is ours.
    reference = grads.T @ _frank_wolfe_min_norm(gram)
    assert direction @ direction <= reference @ reference * (1 + 1e-5)
    np.testing.assert_allclose(direction, grads.T @ _exact_min_norm(gram),
                               atol=1e-4 * np.linalg.norm(reference))


def test_mgda_of_exactly_opposed_gradients_is_zero():
  grads = np.array([[1.0, 2.0, -1.0], [-1.0, -2.0, 1.0]], np.float32)
  direction, w = _combine("mgda", grads)
  np.testing.assert_allclose(w, [0.5, 0.5], atol=1e-6)
  assert np.abs(direction).max() < 1e-5


def _imtl_g_paper(grads):
  """IMTL-G's closed form as written in Liu et al. 2021: a_{2..K} = g_1 U^T (D U^T)^{-1}."""
  units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
  d = grads[0] - grads[1:]
  u = units[0] - units[1:]
  rest = grads[0] @ u.T @ np.linalg.inv(d @ u.T)
  return np.concatenate([[1.0 - rest.sum()], rest])


def test_imtl_g_follows_the_papers_closed_form_and_projects_equally():
  for seed in range(3):
    grads = _conflicting(4, seed=seed)
    direction, a = _combine("imtl_g", grads)
    np.testing.assert_allclose(a, _imtl_g_paper(grads.astype(np.float64)), rtol=1e-4, atol=1e-5)
    units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
    projections = units @ direction
    np.testing.assert_allclose(projections, projections[0], atol=1e-5 * np.abs(grads).max())


def test_nash_mtl_meets_the_bargaining_condition():
  for seed in range(3):
    grads = _conflicting(5, seed=seed)
    direction, a = _combine("nash_mtl", grads)
    assert (a > 0).all()
    # Nash: g_i . d = 1 / a_i, i.e. a_i (GG^T a)_i = 1; exactly so (in float64) for the
    # ridged Gram matrix it solves (the ridge adds 1e-6 max_i |g_i|^2 a_i^2).
    np.testing.assert_allclose(a * (grads @ direction), 1.0, rtol=2e-3)
    grads = grads.astype(np.float64)
    a = gm.nash_mtl(tf.constant(grads))[1].numpy()
    gram = grads @ grads.T
    ridged = gram + 1e-6 * gram.diagonal().max() * np.eye(5)
    np.testing.assert_allclose(a * (ridged @ a), 1.0, rtol=1e-9)
  one = np.array([[3.0, 4.0]], np.float32)
  np.testing.assert_allclose(_combine("nash_mtl", one)[0], [0.6, 0.8], rtol=1e-4)


@pytest.mark.parametrize("alpha", [0.5, 2.0, 5.0])
def test_fairgrad_meets_the_alpha_fair_condition_and_is_nash_mtl_at_alpha_1(alpha):
  for seed in range(3):
    grads = _conflicting(5, seed=seed).astype(np.float64)
    w = gm.fairgrad(tf.constant(grads), alpha=alpha)[1].numpy()
    assert (w > 0).all()
    # g_i . d = w_i^(-1/alpha), exactly so (float64) for the ridged Gram matrix it solves.
    gram = grads @ grads.T
    ridged = gram + 1e-6 * gram.diagonal().max() * np.eye(5)
    np.testing.assert_allclose(w ** (1.0 / alpha) * (ridged @ w), 1.0, rtol=1e-9)
  grads = _conflicting(4)
  np.testing.assert_allclose(gm.fairgrad(tf.constant(grads))[1], gm.nash_mtl(tf.constant(grads))[1],
                             rtol=1e-6)
  one = np.array([[3.0, 4.0]])  # g |g|^(-2 alpha / (alpha + 1)), up to the ridge's 1e-6.
  np.testing.assert_allclose(gm.fairgrad(tf.constant(one), alpha=alpha)[0],
                             one[0] * 5.0 ** (-2 * alpha / (alpha + 1)), rtol=1e-6)


def _aligned_mtl_paper(grads):
  gram = grads @ grads.T
  values, vectors = np.linalg.eigh(gram)
  kept = values > 1e-6 * values.max()
  values, vectors = values[kept], vectors[:, kept]
  b = np.sqrt(values.min()) * vectors @ np.diag(values ** -0.5) @ vectors.T
  return b.sum(axis=1), b


def test_aligned_mtl_aligns_to_the_smallest_singular_value():
  grads = _conflicting(4, seed=2).astype(np.float64)
  direction, a = _combine("aligned_mtl", grads.astype(np.float32))
  want, b = _aligned_mtl_paper(grads)
  np.testing.assert_allclose(a, want, rtol=1e-3, atol=1e-4)
  aligned = b @ grads
  smallest = np.linalg.eigvalsh(grads @ grads.T).min()
  np.testing.assert_allclose(aligned @ aligned.T, smallest * np.eye(4), atol=1e-6 * smallest + 1e-8)
  orthogonal = np.diag([2.0, 2.0, 2.0]).astype(np.float32)
  np.testing.assert_allclose(_combine("aligned_mtl", orthogonal)[0], [2.0, 2.0, 2.0], rtol=1e-5)


def _config_paper(grads):
  """ConFIG as the paper writes it: g_u = y / |y|, y = pinv([u_1 .. u_K]^T) 1; (sum_k g_k .
  g_u) g_u."""
  units = grads / np.linalg.norm(grads, axis=1, keepdims=True)
  y = np.linalg.pinv(units) @ np.ones(len(grads))  # units is [u_1 .. u_K]^T, [K, P].
  g_u = y / np.linalg.norm(y)
  return (grads @ g_u).sum() * g_u


def test_config_follows_the_paper_with_equal_cosines_to_every_task():
  grads = _conflicting(4, seed=6)
  direction, weights = _combine("config", grads)
  want = _config_paper(grads.astype(np.float64))
  np.testing.assert_allclose(direction, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  np.testing.assert_allclose(grads.astype(np.float64).T @ weights, direction, rtol=1e-4,
                             atol=1e-5 * np.abs(want).max())
  cosines = grads @ direction / (np.linalg.norm(grads, axis=1) * np.linalg.norm(direction))
  np.testing.assert_allclose(cosines, cosines[0], rtol=1e-4)
  assert cosines[0] > 0  # No task's loss rises to first order.
  orthogonal = np.diag([2.0, 2.0, 2.0]).astype(np.float32)  # Reduces to the sum here,
  np.testing.assert_allclose(_combine("config", orthogonal)[0], [2.0, 2.0, 2.0], rtol=1e-5)
  parallel = np.array([[1.0, 2.0], [2.0, 4.0]], np.float32)  # and here.
  np.testing.assert_allclose(_combine("config", parallel)[0], [3.0, 6.0], rtol=1e-5)
  opposed = np.array([[1.0, 2.0], [-1.0, -2.0]], np.float32)  # No direction of equal cosines.
  np.testing.assert_array_equal(_combine("config", opposed)[0], [0.0, 0.0])


def _gradvac_paper(grads, orders, targets, beta):
  altered = grads.copy()
  norms = np.linalg.norm(grads, axis=1)
  for i in range(len(grads)):
    for j in orders[i]:
      phi = altered[i] @ grads[j] / (np.linalg.norm(altered[i]) * norms[j])
      target = targets[i, j]
      if phi < target:
        altered[i] = altered[i] + (np.linalg.norm(altered[i]) * (
            target * np.sqrt(1 - phi ** 2) - phi * np.sqrt(1 - target ** 2))
            / (norms[j] * np.sqrt(1 - target ** 2))) * grads[j]
  cosines = (grads / norms[:, None]) @ (grads / norms[:, None]).T
  new = (1 - beta) * targets + beta * cosines
  np.fill_diagonal(new, np.diag(targets))
  return altered.sum(0), new


def test_gradvac_follows_the_paper_and_moves_its_targets():
  grads = _conflicting(3, seed=4)
  orders = [[2, 1], [0, 2], [1, 0]]
  targets = np.array([[0.0, 0.3, -0.1], [0.2, 0.0, 0.5], [0.1, 0.4, 0.0]], np.float32)
  direction, new = gm.gradvac(tf.constant(grads), tf.constant(orders), tf.constant(targets),
                              0.01)
  want, want_targets = _gradvac_paper(grads.astype(np.float64), orders,
                                      targets.astype(np.float64), 0.01)
  np.testing.assert_allclose(direction, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(new, want_targets, rtol=1e-5, atol=1e-6)
  pc = gm.pcgrad(tf.constant(grads), tf.constant(orders))
  zero = gm.gradvac(tf.constant(grads), tf.constant(orders), tf.zeros([3, 3]), 0.01)[0]
  np.testing.assert_allclose(zero, pc, rtol=1e-5, atol=1e-6)  # Targets 0: PCGrad's rule.


def test_pcgrad_and_gradvac_on_the_gram_matrix_follow_the_papers_at_many_tasks():
  """Both run their projections on the K x K Gram matrix (a row as a combination of the
  original rows): at 12 tasks over 3,000 parameters, with conflicts, each equals the paper's
  row-by-row loop on the [K, P] rows in float64 (PCGrad: GradVac's loop with targets 0)."""
  rng = np.random.default_rng(7)
  grads = (rng.normal(size=(1, 3000)) * 0.3 + rng.normal(size=(12, 3000))).astype(np.float32)
  orders = np.stack([rng.permutation([j for j in range(12) if j != i]) for i in range(12)])
  targets = rng.uniform(-0.2, 0.4, size=(12, 12)).astype(np.float32)
  got = gm.pcgrad(tf.constant(grads), tf.constant(orders, tf.int32)).numpy()
  want = _gradvac_paper(grads.astype(np.float64), orders, np.zeros((12, 12)), 0.0)[0]
  assert np.linalg.norm(got - want) <= 1e-5 * np.linalg.norm(want)
  got, _ = gm.gradvac(tf.constant(grads), tf.constant(orders, tf.int32), tf.constant(targets),
                      0.01)
  want, _ = _gradvac_paper(grads.astype(np.float64), orders, targets.astype(np.float64), 0.01)
  assert np.linalg.norm(got.numpy() - want) <= 1e-5 * np.linalg.norm(want)


def _step_as_the_trainer(made, grads, mask):
  """One step of a stateful gradient method in the joint trainer's order: the rows (an
  unlabelled task's zero), combine_gradients, then after_step as for an applied update.
  Returns (direction, weights) as numpy."""
  rows = grads * np.tile(mask, made.samples)[:, None]  # [S K, P] for S samples.
  direction, weights = made.combine_gradients(tf.constant(rows), SEED, tf.constant(mask))
  made.after_step(None, tf.constant(mask))
  return direction.numpy(), weights.numpy()


def test_graddrop_follows_the_paper_and_keeps_agreeing_columns():
  """Per column: purity P = (1 + sum g / sum |g|) / 2; positive entries kept where U < P,
  negative where U > P, the rest times the leak. A column where the tasks agree in sign is
  the plain sum's; leak 1 is the plain sum."""
  grads = _conflicting(3, p=40, seed=6)
  grads[:, :5] = np.abs(grads[:, :5])  # Columns where every task agrees.
  uniform = np.random.default_rng(7).random(40).astype(np.float32)
  for leak in (0.0, 0.3):
    direction, weights = gm.graddrop(tf.constant(grads), tf.constant(uniform), leak)
    g = grads.astype(np.float64)
    purity = 0.5 * (1 + g.sum(0) / np.abs(g).sum(0))
    keep = np.where(uniform < purity, g > 0, g < 0)
    np.testing.assert_allclose(direction, (g * np.where(keep, 1.0, leak)).sum(0),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(direction[:5], g[:, :5].sum(0), rtol=1e-6)
    assert weights.numpy().tolist() == [1.0, 1.0, 1.0]
  plain, _ = gm.graddrop(tf.constant(grads), tf.constant(uniform), 1.0)
  np.testing.assert_allclose(plain, grads.sum(0), rtol=1e-5, atol=1e-6)
  assert 0 < np.mean(keep[:, 5:]) < 1  # Some entries dropped, some kept.


def _db_mtl_paper(grads_per_step, masks, beta, sigma):
  """DB-MTL's Algorithm 1 in numpy: moving averages of the log-losses' gradients, each scaled
  to the largest's norm; an unlabelled task's average kept and left out."""
  buffer = np.zeros_like(grads_per_step[0])
  directions = []
  for t, (g, mask) in enumerate(zip(grads_per_step, masks), start=1):
    rate = beta / t ** sigma
    buffer = np.where(mask[:, None], rate * buffer + (1 - rate) * g, buffer)
    norms = np.linalg.norm(buffer, axis=1) * mask
    alpha = np.where(norms > 0, norms.max() / np.where(norms > 0, norms, 1), 0)
    directions.append(alpha @ buffer)
  return directions, buffer


def test_db_mtl_follows_the_papers_algorithm_over_steps():
  """Five steps of `DualBalancing` (its moving averages as state, the rate beta / t^sigma) in
  the trainer's order (combine, then after_step once the update is applied) against the
  paper's algorithm; task 2 unlabelled in step 3. Every labelled task's scaled average has
  the largest's norm."""
  rng = np.random.default_rng(8)
  steps = [(rng.normal(size=(3, 12)) * [[1.0], [10.0], [0.1]]).astype(np.float32)
           for _ in range(5)]
  masks = [np.array([True, True, m]) for m in (True, True, False, True, True)]
  for beta, sigma in ((0.9, 0.0), (0.5, 0.5)):
    made = weighting.make_weighting("db_mtl", ["a", "b", "c"],
                                    options={"beta": beta, "beta_sigma": sigma})
    made.build(12)
    want, want_buffer = _db_mtl_paper([s.astype(np.float64) for s in steps], masks, beta,
                                      sigma)
    for g, mask, w in zip(steps, masks, want):
      direction, weights = _step_as_the_trainer(made, g, mask)
      np.testing.assert_allclose(direction, w, rtol=1e-4, atol=1e-6)
      scaled = weights[:, None] * made.averages.numpy()
      norms = np.linalg.norm(scaled[mask], axis=1)
      np.testing.assert_allclose(norms, norms.max(), rtol=1e-5)
    np.testing.assert_allclose(made.averages, want_buffer, rtol=1e-5, atol=1e-7)
    assert int(made.steps.numpy()) == 5


def _simplex_projection(v, mass):
  """Euclidean projection onto {w >= 0, sum w = mass} by bisection on the threshold."""
  lo, hi = v.min() - mass, v.max()
  for _ in range(200):
    theta = 0.5 * (lo + hi)
    lo, hi = (theta, hi) if np.maximum(v - theta, 0).sum() > mass else (lo, theta)
  return np.maximum(v - 0.5 * (lo + hi), 0)


def _moco_paper(steps, masks, beta, beta_sigma, gamma, gamma_sigma, rho):
  """MoCo's Algorithm 1 in numpy, float64; an unlabelled task keeps y_k and lambda_k, the
  labelled weights are projected onto their share of the simplex."""
  k = steps[0].shape[0]
  y, lam, out = np.zeros_like(steps[0]), np.full(k, 1.0 / k), []
  for t, (g, m) in enumerate(zip(steps, masks), start=1):
    b, c = beta / t ** beta_sigma, gamma / t ** gamma_sigma
    y = np.where(m[:, None], y - b * (y - g), y)
    ym = y[m]
    step = lam[m] - c * (ym @ ym.T + rho * np.eye(m.sum())) @ lam[m]
    lam = lam.copy()
    lam[m] = _simplex_projection(step, lam[m].sum())
    out.append((np.where(m, lam, 0) @ y, lam.copy()))
  return out, y


def test_moco_follows_the_papers_algorithm_over_steps():
  """Six steps of `MoCo` in the trainer's order against Algorithm 1 in numpy, task 2 unlabelled
  in step 4; the weights stay on the simplex, an unlabelled task's lambda and y stay put."""
  steps = [_conflicting(3, p=10, seed=s) * np.float32(1 + s) for s in range(6)]
  masks = [np.array([True, True, s != 3]) for s in range(6)]
  for options in ({}, {"rho": 0.1, "gamma": 0.5, "beta_sigma": 0.0}):
    made = weighting.make_weighting("moco", ["a", "b", "c"], options=options)
    made.build(10)
    full = dict(choices.WEIGHTING_OPTIONS["moco"], **options)
    want, want_y = _moco_paper([s.astype(np.float64) for s in steps], masks, **full)
    for g, mask, (direction_want, lam_want) in zip(steps, masks, want):
      kept = made.simplex_weights.numpy()[2]
      direction, _ = _step_as_the_trainer(made, g, mask)
      np.testing.assert_allclose(direction, direction_want, rtol=1e-4, atol=1e-5)
      np.testing.assert_allclose(made.simplex_weights, lam_want, rtol=1e-4, atol=1e-6)
      assert np.isclose(made.simplex_weights.numpy().sum(), 1.0, atol=1e-6)
      assert (made.simplex_weights.numpy() >= 0).all()
      if not mask[2]:
        assert made.simplex_weights.numpy()[2] == kept
    np.testing.assert_allclose(made.tracked, want_y, rtol=1e-4, atol=1e-6)


def _excess_mtl_paper(steps, masks, step_size):
  """ExcessMTL as the authors' code (LibMTL's port) in numpy, float64, with an unlabelled
  task kept out: its squares, first estimate and weight stay; the labelled weights are
  normalised to their share of K."""
  k = steps[0].shape[0]
  squares, initial, seen = np.zeros_like(steps[0]), np.zeros(k), np.zeros(k, bool)
  weights, out = np.ones(k), []
  for g, m in zip(steps, masks):
    squares = np.where(m[:, None], squares + g ** 2, squares)
    excess = (g ** 2 / np.sqrt(squares + 1e-7)).sum(1)
    first = m & ~seen
    initial = np.where(first, excess, initial)
    ratio = np.divide(excess, initial, out=np.zeros(k), where=m & seen)
    grown = np.where(m & seen, weights * np.exp(step_size * ratio), weights)
    share = k - weights[~m].sum()
    weights = np.where(m, grown * share / grown[m].sum(), weights)
    seen = seen | m
    out.append((np.where(m, weights, 0) @ (g * m[:, None]), weights.copy()))
  return out


def test_excess_mtl_follows_the_authors_algorithm_over_steps():
  """Six steps of `ExcessRisk` in the trainer's order against the authors' algorithm in
  numpy; task 2 unlabelled in steps 0 and 3 (its first estimate waits for its first label).
  The weights sum to K, and the task whose gradient stays large against its first one gains
  weight."""
  steps = [_conflicting(3, p=10, seed=s) * np.float32([[1.0], [1.0 + s], [1.0]])
           for s in range(6)]
  masks = [np.array([True, True, s not in (0, 3)]) for s in range(6)]
  made = weighting.make_weighting("excess_mtl", ["a", "b", "c"],
                                  options={"robust_step_size": 0.5})
  made.build(10)
  want = _excess_mtl_paper([s.astype(np.float64) for s in steps], masks, 0.5)
  for g, mask, (direction_want, weights_want) in zip(steps, masks, want):
    kept = made.loss_weights.numpy()[2]
    direction, _ = _step_as_the_trainer(made, g, mask)
    np.testing.assert_allclose(direction, direction_want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(made.loss_weights, weights_want, rtol=1e-5, atol=1e-6)
    assert np.isclose(made.loss_weights.numpy().sum(), 3.0, atol=1e-5)
    if not mask[2]:
      assert made.loss_weights.numpy()[2] == kept
  assert made.loss_weights.numpy()[1] == made.loss_weights.numpy().max()


def test_excess_mtl_stays_finite_when_an_excess_risk_grows_past_float32():
  """A task whose first excess-risk estimate is near 0 (a flat start) and whose next is
  large: exp(0.01 e_k / e_k^0) is past float32's range; the weights, normalised in log
  space, stay finite and sum to K (the CAGrad toy landscape met this at step 2,597)."""
  made = weighting.make_weighting("excess_mtl", ["a", "b"])
  made.build(4)
  base = np.array([[1.0, -1.0, 0.5, 0.0], [0.5, 1.0, -1.0, 2.0]], np.float32)
  mask = np.array([True, True])
  for scale in (1e-6, 1e4, 1e4):
    direction, weights = _step_as_the_trainer(made, base * np.float32([[scale], [1.0]]), mask)
    assert np.isfinite(direction).all() and np.isfinite(weights).all(), scale
  np.testing.assert_allclose(made.loss_weights.numpy().sum(), 2.0, rtol=1e-6)
  assert made.loss_weights.numpy()[0] > 1.99  # Task a's risk grew: it takes the weight.


def _sdmgrad_authors(samples, masks, lamda, iterations):
  """SDMGrad as the authors' code (LibMTL's port) in numpy, float64: per step, samples
  (xi, xi', zeta) [3, K, P]. An unlabelled task is kept out: its weight stays, the labelled
  weights are projected onto their share of the simplex, the mean is over the labelled.
  Returns per step (direction, weights after the step)."""
  k = samples[0].shape[1]
  w, out = np.full(k, 1.0 / k), []
  for (xi1, xi2, zeta), m in zip(samples, masks):
    xi1, xi2, zeta = (g * m[:, None] for g in (xi1, xi2, zeta))
    gg = xi1 @ xi2.T
    scale = np.sqrt(np.maximum(np.diag(gg), 0))[m].mean()
    gg = gg / (scale ** 2 + 1e-8)
    pull = lamda * gg[:, m].mean(axis=1)
    share, momentum = w[m].sum(), np.zeros(k)
    for _ in range(iterations):  # torch.optim.SGD(lr=5, momentum=0.5), made afresh each step.
      momentum = 0.5 * momentum + gg @ np.where(m, w, 0.0) + pull
      step = w - 5.0 * momentum
      w = w.copy()
      w[m] = _simplex_projection(step[m], share)
    used = np.where(m, w, 0.0) + lamda * m / m.sum()
    out.append((used @ zeta / (1 + lamda), w.copy()))
  return out


def _modo_authors(samples, masks, gamma, rho):
  """MoDo as the authors' code (LibMTL's port) in numpy, float64, per step (G_1, G_2, G_3)
  [3, K, P]; an unlabelled task's weight stays and the labelled ones keep their share."""
  k = samples[0].shape[1]
  lam, out = np.full(k, 1.0 / k), []
  for (g1, g2, g3), m in zip(samples, masks):
    g1, g2, g3 = (g * m[:, None] for g in (g1, g2, g3))
    live = np.where(m, lam, 0.0)
    step = lam - gamma * (g1 @ (g2.T @ live) + rho * live)
    lam = lam.copy()
    lam[m] = _simplex_projection(step[m], lam[m].sum())
    out.append((np.where(m, lam, 0.0) @ g3, lam.copy()))
  return out


def _three_samples(k, p, seed):
  """[3, K, P] float32: three noisy draws around one set of conflicting gradients."""
  rng = np.random.default_rng(seed)
  base = _conflicting(k, p=p, seed=seed)
  return (base[None] + 0.3 * rng.normal(size=(3, k, p))).astype(np.float32)


@pytest.mark.parametrize("method", ["sdmgrad", "modo"])
def test_the_sampled_methods_follow_the_authors_algorithms_over_steps(method):
  """Five steps of SDMGrad and MoDo in the trainer's order (rows [3 K, P], sample after
  sample) against the authors' algorithms in numpy, task 2 unlabelled in step 3; the weights
  stay on the simplex and an unlabelled task's stays put; with options other than the
  defaults too."""
  steps = [_three_samples(3, 12, seed) * np.float32(1 + seed) for seed in range(5)]
  masks = [np.array([True, True, s != 2]) for s in range(5)]
  other = {"lamda": 1.0, "iterations": 5} if method == "sdmgrad" else {"gamma": 0.05,
                                                                     "rho": 0.5}
  for options in ({}, other):
    made = weighting.make_weighting(method, ["a", "b", "c"], options=options)
    full = dict(choices.WEIGHTING_OPTIONS[method], **options)
    reference = _sdmgrad_authors if method == "sdmgrad" else _modo_authors
    want = reference([s.astype(np.float64) for s in steps], masks, **full)
    for g, mask, (direction_want, weights_want) in zip(steps, masks, want):
      kept = made.simplex_weights.numpy()[2]
      direction, _ = _step_as_the_trainer(made, g.reshape(9, 12), mask)
      np.testing.assert_allclose(direction, direction_want, rtol=1e-4,
                                 atol=1e-5 * np.abs(direction_want).max())
      np.testing.assert_allclose(made.simplex_weights, weights_want, rtol=1e-4, atol=1e-6)
      assert np.isclose(made.simplex_weights.numpy().sum(), 1.0, atol=1e-6)
      assert (made.simplex_weights.numpy() >= 0).all()
      if not mask[2]:
        assert made.simplex_weights.numpy()[2] == kept
    assert not np.allclose(made.simplex_weights, 1 / 3)  # The weights moved.


class _Sideways(TaskHead):
  """A head whose predictions are not batch-major: [1, B] (as the language model's sampled
  logits are not)."""

  def __init__(self, task):
    super().__init__(reads="hidden")
    self.out = Linear(8, 1, seed=3)

  def __call__(self, representation, features, *, training, seed):
    return tf.transpose(self.out(representation))


class _Hidden(SharedTrunk):
  output_sizes = {"hidden": 8}

  def __init__(self):
    super().__init__()
    self.layer = Linear(4, 8, seed=0)

  def __call__(self, features, *, training, seed):
    return {"hidden": tf.nn.relu(self.layer(features["x"]))}


def test_a_batch_too_small_for_three_samples_is_refused_in_one_line():
  """A part of fewer than one example would give zero rows and no update: refused."""
  from mtlcore.errors import ConfigError  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  with pytest.raises(ConfigError, match="--batch_size=2: --weighting=modo splits each "
                                        "replica's batch into 3 parts"):
    RunConfig(task_set="toy", weighting="modo", batch_size=2)
  model = MultiTaskModel(_Hidden(), {t: _Sideways(t) for t in ("a", "b")})
  x = np.zeros((2, 4), np.float32)
  trainer = JointTrainer(
      model=model, tasks=[Task(t, loss=lambda l, p, f: _masked_squared(l, tf.transpose(p), f))
                          for t in ("a", "b")],
      optimizer=Adam(0.01), weighting=weighting.make_weighting("sdmgrad", ["a", "b"]),
      dataset=tf.data.Dataset.from_tensors(({"x": x}, {"a": x[:, :1], "b": x[:, :1]})).repeat())
  with pytest.raises(ConfigError, match="a batch of 2 example\\(s\\) leaves one empty"):
    trainer.train(1)


def test_the_sampled_methods_split_the_batch_not_the_predictions():
  """Each part's losses come from its own forward pass on the part's features, so a head
  may predict in any layout: with [1, B] predictions MoDo's compiled step trains, in the
  direction of the rows recomputed by hand on the strided parts of the batch. (SDMGrad's
  weights take 20 steps at rate 5 and are too sensitive for this check: rows 2.4e-7 apart,
  XLA's against eager's, moved its weights by 0.09, measured.)"""
  method = "modo"
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(9, 4)).astype(np.float32), rng.normal(size=(9, 1)).astype(np.float32)
  loss = lambda labels, predictions, features: _masked_squared(labels, tf.transpose(
      predictions), features)
  model = MultiTaskModel(_Hidden(), {t: _Sideways(t) for t in ("a", "b")})
  made = weighting.make_weighting(method, ["a", "b"])
  trainer = JointTrainer(model=model, tasks=[Task(t, loss=loss) for t in ("a", "b")],
                         optimizer=Adam(0.01), dataset=tf.data.Dataset.from_tensors(
                             ({"x": x}, {"a": y, "b": -y})).repeat(), weighting=made)
  shared = model.trunk.layer.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    losses = [_masked_squared(sign * y[i::3], tf.transpose(model({"x": x[i::3]})[t]),
                              None).value()
              for i in range(3) for t, sign in (("a", 1.0), ("b", -1.0))]
  rows = tf.stack([tf.concat([tf.reshape(g, [-1]) for g in tape.gradient(l, shared)], 0)
                   for l in losses])
  check = weighting.make_weighting(method, ["a", "b"])
  want, _ = check.combine_gradients(rows, SEED, tf.constant([True, True]))
  before = [v.numpy().copy() for v in shared]
  trainer.train(1)
  step = [v.numpy() - b for v, b in zip(shared, before)]
  assert all(np.isfinite(d).all() and np.abs(d).max() > 0 for d in step)
  # Adam's first step moves each parameter by lr x sign(g) (|g| >> epsilon).
  want = np.sign(want.numpy())
  got = np.sign(np.concatenate([-d.reshape(-1) for d in step]))
  np.testing.assert_array_equal(got[want != 0], want[want != 0])


# ------------------------------------------------------------------------- all of them


@pytest.mark.parametrize("method", ALL)
def test_an_unlabelled_task_takes_no_part(method):
  """With task 1 of 4 unlabelled (a zero row), the method gives what it gives on the three
  labelled rows alone, and task 1 weight 0."""
  grads = _conflicting(3, seed=5)
  with_gap = np.insert(grads, 1, 0.0, axis=0)
  got, weights = _combine(method, with_gap, np.array([True, False, True, True]))
  if method in ("pcgrad", "gradvac"):  # Random orders differ between K = 3 and K = 4.
    return
  if method == "sdmgrad":  # Its weights start at 1/K, and its pull towards the mean is not
    return  # scaled with them; its own test checks an unlabelled task over steps.
  want, want_weights = _combine(method, grads)
  if method in ("moco", "modo"):  # Weights from 1/K: the labelled three hold 3/4 of them.
    want, want_weights = 0.75 * want, 0.75 * want_weights
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
  assert weights[1] == 0.0
  scale = 4 / 3 if method == "cagrad" else 1.0  # CAGrad reports K w.
  np.testing.assert_allclose(np.delete(weights, 1), scale * want_weights, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ALL)
def test_near_parallel_and_opposed_gradients_give_finite_directions(method):
  rng = np.random.default_rng(1)
  base = rng.normal(size=7)
  for grads in (np.stack([base, base * (1 + 1e-4) + 1e-5]), np.stack([base, -base]),
                np.zeros((2, 7))):
    direction, weights = _combine(method, grads.astype(np.float32))
    assert np.isfinite(direction).all() and np.isfinite(weights).all(), (method, grads)


@pytest.mark.parametrize("method", ALL)
def test_every_method_runs_at_64_tasks_compiled(method):
  rng = np.random.default_rng(2)
  grads = rng.normal(size=(64, 30)).astype(np.float32)
  labelled = rng.random(64) > 0.2
  made = _made(method, 64, 30)
  step = tf.function(lambda g, l: made.combine_gradients(_samples(made, g), SEED, l),
                     jit_compile=True)
  direction, weights = step(tf.constant(grads), tf.constant(labelled))
  assert np.isfinite(direction.numpy()).all()
  assert (weights.numpy()[~labelled] == 0).all() or method in ("pcgrad", "gradvac")
  if method in ("upgrad", "dualproj"):
    rows = grads[labelled] @ direction.numpy()
    assert (rows >= -1e-4 * np.abs(rows).max()).all()


# ------------------------------------------------------------------ inside the joint step


class _GatedTrunk(SharedTrunk):
  """A shared layer, then one gate per task (a task-owned part of the trunk)."""

  def __init__(self, tasks):
    super().__init__()
    self.shared = Linear(4, 8, seed=0)
    self.gates = {t: Linear(8, 8, seed=i + 1) for i, t in enumerate(tasks)}
    self.output_sizes = {t: 8 for t in tasks}

  def __call__(self, features, *, training, seed):
    hidden = tf.nn.relu(self.shared(features["x"]))
    return {t: gate(hidden) for t, gate in self.gates.items()}

  def task_parts(self):
    return dict(self.gates)


class _Head(TaskHead):
  def __init__(self, task):
    super().__init__(reads=task)
    self.out = Linear(8, 1, seed=7)

  def __call__(self, representation, features, *, training, seed):
    return self.out(representation)


STEPS = 300


def _mean_losses(trainer, features, labels):
  predictions = trainer.model(features)
  return {t: float(_masked_squared(labels[t], predictions[t], features).value())
          for t in ("a", "c")}


@pytest.mark.parametrize("method", [m for m in WEIGHTINGS if m != "static"])
def test_an_unlabelled_tasks_head_gate_and_slots_stay_bitwise_under_every_method(method):
  """Every weighting, compiled, on a shared layer with one gate per task: tasks a and c are
  labelled and each learns (held-out loss down tenfold in STEPS steps; measured 100x to
  18,000x; the method's weights, and a gradient method's cosines, logged). Task b has no
  label in any batch, so its head, its gate inside the trunk, its weighting variables (a
  learned scale) and their Adam slots stay bitwise, while a's gate, its weighting variables
  and the shared layer move. Each step is traced once."""
  tasks = ("a", "b", "c")
  model = MultiTaskModel(_GatedTrunk(tasks), {t: _Head(t) for t in tasks})
  rng = np.random.default_rng(0)
  x = rng.normal(size=(320, 4)).astype(np.float32)
  targets = {"a": x[:, :1] * 2.0, "b": np.full((320, 1), np.nan, np.float32),
             "c": x[:, 1:2] - x[:, 2:3]}
  data = tf.data.Dataset.from_tensor_slices(
      ({"x": x[:256]}, {t: y[:256] for t, y in targets.items()})).repeat().batch(16)
  held_out = ({"x": x[256:]}, {t: y[256:] for t, y in targets.items()})
  optimizer = Adam(0.03)
  trainer = JointTrainer(model=model, tasks=[Task(t, loss=_masked_squared) for t in tasks],
                         optimizer=optimizer, dataset=data, seed=1,
                         weighting=weighting.make_weighting(method, list(tasks), period=2))
  own = trainer.weighting.task_variables()
  kept = [*model.trunk.gates["b"].trainable_variables, *model.heads["b"].trainable_variables,
          *own.get("b", [])]
  moved = [*model.trunk.gates["a"].trainable_variables, *model.trunk.shared.trainable_variables,
           *own.get("a", [])]
  rows = trainer.weighting.task_rows()  # Row 1 is b's, row 0 a's.
  assert method not in ("uncertainty", "imtl_l", "imtl") or rows
  before, moved_before = [v.numpy().copy() for v in kept], [v.numpy().copy() for v in moved]
  rows_before = [v.numpy().copy() for v in rows]
  first = _mean_losses(trainer, *held_out)
  logs = trainer.train(STEPS)
  index = optimizer._index  # pylint: disable=protected-access
  for b, v in zip(before, kept):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.name)
    slot = index[v.ref()]
    assert not optimizer.m[slot].numpy().any() and not optimizer.v[slot].numpy().any()
  for b, v in zip(moved_before, moved):
    assert not np.array_equal(b, v.numpy()), v.name
  for b, v in zip(rows_before, rows):
    slot = index[v.ref()]
    np.testing.assert_array_equal(b[1], v.numpy()[1], err_msg=v.name)
    assert not optimizer.m[slot].numpy()[1].any() and not optimizer.v[slot].numpy()[1].any()
    assert b[0] != v.numpy()[0] and b[2] != v.numpy()[2], v.name
  last = _mean_losses(trainer, *held_out)
  for task in ("a", "c"):
    assert last[task] * 10 <= first[task], (task, first, last)
    if method != "sum":
      assert np.isfinite(logs.tasks[task].metrics["weight"])
    if trainer.weighting.needs_task_gradients:
      assert -1.0 <= logs.tasks[task].metrics["cosine"] <= 1.0
  assert all(n == 1 for n in trainer.step_trace_counts().values())
