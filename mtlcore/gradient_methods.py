"""Gradient methods: how the K task gradients of one batch on the shared variables, a [K, P]
matrix, become one [P] update direction.

Each method is a pure function `method(grads, ..., labelled=None) -> (direction [P],
weights [K])` whose direction is `grads^T weights` (PCGrad, GradVac: a sum of altered rows,
weights 1). `labelled` (bool [K], None: all) names the tasks with a label in the batch: the
others' rows are zero and take no part (they get weight 0), so the result is the method's on
the labelled rows alone. Everything compiles inside the XLA step: the quadratic programs are
solved by mtlcore.bounded_quadratic (an active-set method in one while loop) and Nash-MTL's
bargaining problem by damped Newton steps, both in float64 on the K x K Gram matrix, with
iteration caps and a graph whose size does not grow with K.

Scale. A method that reduces to the plain sum when no two gradients conflict (`pcgrad`,
`cagrad` (times K), `upgrad`, `dualproj`, `gradvac`, `graddrop`) is scaled to give `sum`'s
direction then, so it keeps `sum`'s learning rate. The others keep their papers' scale: `mgda`
returns the min-norm point of the convex hull (weights sum to 1), `imtl_g` a combination whose
weights sum to 1, `nash_mtl` the Nash bargaining solution (task utilities g_k . d = 1 / a_k),
`fairgrad` the alpha-fair one (g_k . d = w_k^(-1/alpha)), `aligned_mtl` the gradients
rescaled to their smallest singular value, `config` the sum of the gradients' projections on
the direction of equal cosines, `db_mtl` every task's moving average at the largest's norm,
`moco` a convex combination of its tracked gradients, `excess_mtl` loss weights summing to
K, and `sdmgrad` and `modo` convex combinations of one sample's gradients.

Checked against each paper's algorithm in numpy, and by each problem's optimality conditions,
in tests/test_gradient_methods.py.
"""

import tensorflow as tf

from mtlcore import bounded_quadratic

RIDGE = 1e-6  # Relative to the Gram matrix's largest diagonal entry; see _ridged.


def _mask(labelled, k):
  """(bool [K], float32 [K], count of labelled tasks >= 1) of `labelled` (None: all)."""
  labelled = tf.ones([k], tf.bool) if labelled is None else tf.convert_to_tensor(labelled)
  mask = tf.cast(labelled, tf.float32)
  return labelled, mask, tf.maximum(tf.reduce_sum(mask), 1.0)


def _masked(grads, labelled):
  """(grads with unlabelled rows zeroed, their Gram matrix in float64 [K, K], mask [K])."""
  k = grads.shape[0]
  labelled, mask, _ = _mask(labelled, k)
  grads = grads * tf.cast(mask, grads.dtype)[:, None]
  gram = tf.cast(tf.linalg.matmul(grads, grads, transpose_b=True), tf.float64)
  return grads, gram, labelled


def _ridged(gram, ridge):
  """gram + ridge * max(diag) * I: positive definite when gradients are parallel or zero
  (a zero row's coordinate then only costs, so a bound-free solver leaves it at its bound)."""
  k = gram.shape[0]
  top = tf.maximum(tf.reduce_max(tf.linalg.diag_part(gram)), 1e-300)
  return gram + ridge * top * tf.eye(k, dtype=gram.dtype)


def _combine(grads, weights):
  """(grads^T weights [P], weights [K] float32)."""
  weights = tf.cast(weights, grads.dtype)
  return tf.linalg.matvec(grads, weights, transpose_a=True), weights


# ------------------------------------------------------------------ projections and surgery


def pcgrad(grads, orders):
  """Gradient surgery (Yu et al. 2020): PCGrad's combined direction.

  For each task i, its gradient g_i is projected, task by task in `orders[i]`, onto the normal
  plane of every other task's (original) gradient g_j it conflicts with (g_i . g_j < 0):
  g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j. The result is the sum of the projected gradients:
  the gradient of the sum of the losses when no two tasks conflict. An unlabelled task's zero
  row neither projects another row nor is changed.

  A projected row is a combination of the original rows, C[i] . G, so the projections run on
  the K x K Gram matrix G G^T (one product over the P columns): (C[i] . G) . g_j is
  (C Gram)[i, j]. All K rows are projected at once, one position of the orders after the
  other (a while loop of K - 1 steps over [K, K]: the graph does not grow with K), and the
  direction is (sum_i C[i]) . G, one more pass over the columns.

  Args:
    grads: float32 [K, P], one row per task (zeros for a task with no label).
    orders: int32 [K, K - 1], orders[i] the other tasks in the order task i is projected.
  Returns:
    [P].
  """
  k = grads.shape[0]
  if k < 2:
    return tf.reduce_sum(grads, axis=0)
  gram = tf.linalg.matmul(grads, grads, transpose_b=True)  # [K, K]
  squared = tf.linalg.diag_part(gram)

  def step(position, mixing):
    j = orders[:, position]  # [K]: the task each row is projected against now.
    dot = tf.reduce_sum(mixing * tf.gather(gram, j), axis=1)  # (C Gram)[i, j_i]
    coefficient = tf.where(dot < 0, dot / tf.maximum(tf.gather(squared, j), 1e-20), 0.0)
    return position + 1, mixing - coefficient[:, None] * tf.one_hot(j, k, dtype=gram.dtype)

  _, mixing = tf.while_loop(lambda p, _: p < k - 1, step,
                            (tf.constant(0), tf.eye(k, dtype=grads.dtype)))
  return tf.linalg.matvec(grads, tf.reduce_sum(mixing, axis=0), transpose_a=True)


def gradvac(grads, orders, targets, beta):
  """Gradient Vaccine (Wang et al. 2021), one step: (direction [P], new targets [K, K]).

  Like PCGrad, each task's gradient g_i is altered against every other task j in
  `orders[i]`; instead of only removing conflicts, whenever the cosine phi_ij between (the
  altered) g_i and the original g_j is below its target phi^_ij, g_j is added with the
  coefficient that brings the cosine to the target:
  g_i += |g_i| (phi^ sqrt(1 - phi^2) - phi sqrt(1 - phi^^2)) / (|g_j| sqrt(1 - phi^^2)) g_j.
  Each target then moves towards the observed cosine of the original gradients, as an
  exponential moving average: phi^_ij <- (1 - beta) phi^_ij + beta phi_ij. With targets 0 it
  is PCGrad's rule. The direction is the sum of the altered rows (`sum`'s when no two tasks
  are below their targets). A zero row (an unlabelled task) is left alone, alters nothing and
  keeps its targets.

  Args:
    grads: float32 [K, P]; orders: int32 [K, K - 1]; targets: float32 [K, K] (phi^, start 0);
    beta: the moving average's rate in [0, 1] (the paper's 1e-2).
  Returns:
    (direction [P], targets [K, K]).
  """
  k = grads.shape[0]
  if k < 2:
    return tf.reduce_sum(grads, axis=0), targets
  # As `pcgrad`: an altered row is C[i] . G, so the loop runs on the Gram matrix.
  gram = tf.linalg.matmul(grads, grads, transpose_b=True)  # [K, K]
  norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))  # [K]
  safe = tf.maximum(norms, 1e-20)
  original = gram / (safe[:, None] * safe[None, :])  # [K, K] cosines.
  present = norms > 0

  def step(position, mixing):
    j = orders[:, position]
    target = tf.gather(targets, j, batch_dims=1)  # phi^_{i, j(i)}
    mixed_gram = tf.linalg.matmul(mixing, gram)  # [K, K]: (C Gram)
    altered_norm = tf.sqrt(tf.maximum(tf.reduce_sum(mixed_gram * mixing, axis=1), 0.0))
    dot = tf.gather(mixed_gram, j, batch_dims=1)  # altered_i . g_j(i)
    phi = dot / tf.maximum(altered_norm * tf.gather(norms, j), 1e-20)
    below = (phi < target) & present & tf.gather(present, j)
    root = lambda x: tf.sqrt(tf.maximum(1.0 - x * x, 0.0))
    coefficient = (altered_norm * (target * root(phi) - phi * root(target))
                   / tf.maximum(tf.gather(norms, j) * root(target), 1e-20))
    return position + 1, mixing + (tf.where(below, coefficient, 0.0)[:, None]
                                   * tf.one_hot(j, k, dtype=gram.dtype))

  _, mixing = tf.while_loop(lambda p, _: p < k - 1, step,
                            (tf.constant(0), tf.eye(k, dtype=grads.dtype)))
  both = present[:, None] & present[None, :] & ~tf.eye(k, dtype=tf.bool)
  new_targets = tf.where(both, (1.0 - beta) * targets + beta * original, targets)
  return tf.linalg.matvec(grads, tf.reduce_sum(mixing, axis=0), transpose_a=True), new_targets


def graddrop(grads, uniform, leak=0.0, labelled=None):
  """Gradient Sign Dropout (Chen et al. 2020, "Just pick a sign"), on the shared parameters'
  gradients: per column i (one shared parameter), the positive sign purity
  P_i = (1 + sum_k g_ki / sum_k |g_ki|) / 2; with a uniform draw U_i, the column keeps the
  tasks' positive entries where U_i < P_i and their negative entries where U_i > P_i, and the
  rest are scaled by `leak` (0: dropped; 1: the plain sum). The direction is the sum of the
  kept rows, so a column where no two tasks disagree in sign is `sum`'s exactly (its purity is
  0 or 1). The paper places the operation at an activation layer (gradients summed over the
  batch against the sign of the layer's input); here it acts on the trainer's [K, P] rows,
  every shared parameter a column. An unlabelled task's zero row has no sign and changes no
  purity.

  Args:
    grads: float32 [K, P]; uniform: float32 [P] in [0, 1) (the step's draws); leak: in [0, 1];
    labelled: bool [K] or None (all).
  Returns:
    (direction [P], weights [K]: 1 for a labelled task, 0 for the others).
  """
  labelled, mask, _ = _mask(labelled, grads.shape[0])
  grads = grads * mask[:, None]
  total = tf.reduce_sum(grads, axis=0)
  magnitude = tf.reduce_sum(tf.abs(grads), axis=0)
  purity = 0.5 * (1.0 + total / tf.maximum(magnitude, 1e-30))
  keep = tf.where(uniform[None] < purity[None], grads > 0, grads < 0)
  kept = grads * tf.where(keep, 1.0, leak)
  return tf.reduce_sum(kept, axis=0), mask


def cagrad_simplex_weights(gram, c, iterations=200, labelled=None):
  """CAGrad's inner problem (Liu et al. 2021): w on the simplex minimising
  F(w) = w^T G g0 + c |g0| |G^T w|, with G the task gradients, g0 their mean; in terms of the
  Gram matrix GG^T: F(w) = w^T (GG^T 1/K) + c sqrt(1^T GG^T 1 / K^2) sqrt(w^T GG^T w).
  With `labelled`, G, g0 and the simplex are those of the labelled tasks only (an
  unlabelled task's zero gradient would otherwise draw all the weight: F = 0 there).

  Solved by exponentiated gradient descent (mirror descent on the simplex) for a fixed number
  of iterations, so it compiles into the step; the original solves it with scipy's SLSQP.

  Args:
    gram: float32 [K, K], GG^T.
    c: the conflict-averse radius, >= 0.
    labelled: bool [K] or None (all).
  Returns:
    w [K], 0 for unlabelled tasks.
  """
  k = gram.shape[0]
  labelled, mask, m = _mask(labelled, k)
  gram = gram * mask[:, None] * mask[None, :]
  mean_gram = tf.reduce_sum(gram, axis=1) / m  # GG^T 1/m over the labelled tasks.
  g0_norm = tf.sqrt(tf.maximum(tf.reduce_sum(gram) / (m * m), 0.0))
  scale = tf.maximum(tf.reduce_max(tf.abs(tf.linalg.diag_part(gram))), 1e-20)

  def objective_gradient(w):
    norm = tf.sqrt(tf.maximum(tf.tensordot(w, tf.linalg.matvec(gram, w), 1), 1e-20))
    return mean_gram + c * g0_norm * tf.linalg.matvec(gram, w) / norm

  def step(i, log_w):
    w = tf.nn.softmax(log_w)
    # Step size 1 on the gradient in units of the largest squared task-gradient norm.
    return i + 1, log_w - objective_gradient(w) / scale

  # An unlabelled task starts (and, its gradient entries being 0, stays) at weight ~0.
  start = tf.where(labelled, 0.0, -1e9)
  _, log_w = tf.while_loop(lambda i, _: i < iterations, step, (tf.constant(0), start))
  return tf.nn.softmax(log_w) * mask


def cagrad(grads, c=0.5, iterations=200, labelled=None):
  """Conflict-Averse Gradient descent (Liu et al. 2021).

  d = g0 + c |g0| / |g_w| g_w with g_w = G^T w from `cagrad_simplex_weights`, divided by
  (1 + c^2) as in the original, then multiplied by K so that with c = 0 it is the gradient of
  the sum of the losses (our `sum` baseline, whose learning rate it keeps). With `labelled`,
  over the m labelled tasks only (their mean g0, times m): exactly CAGrad on their rows.

  Args:
    grads: float32 [K, P]; c >= 0.
    labelled: bool [K] or None (all).
  Returns:
    ([P], simplex weights w [K], 0 for unlabelled tasks).
  """
  k = grads.shape[0]
  _, mask, m = _mask(labelled, k)
  grads = grads * mask[:, None]
  gram = tf.linalg.matmul(grads, grads, transpose_b=True)
  w = cagrad_simplex_weights(gram, c, iterations, labelled)
  g0 = tf.reduce_sum(grads, axis=0) / m
  gw = tf.linalg.matvec(grads, w, transpose_a=True)
  g0_norm = tf.sqrt(tf.maximum(tf.reduce_sum(gram) / (m * m), 0.0))
  gw_norm = tf.norm(gw)
  direction = g0 + c * g0_norm / tf.maximum(gw_norm, 1e-20) * gw
  return m * direction / (1.0 + c * c), w


def upgrad(grads, ridge=RIDGE, labelled=None):
  """UPGrad (Quinton & Rey 2024, "Jacobian descent for multi-objective optimization").

  Each task gradient g_i is projected onto the dual cone of all task gradients (the
  directions that conflict with none), and the projections are averaged. In the Gram
  matrix's terms the projection of g_i is G^T u_i with u_i = argmin_{u >= e_i} u^T GG^T u,
  so the result is G^T (mean_i u_i). Multiplied by K, as CAGrad here: with no conflict it is
  the gradient of the sum. The result never conflicts with any task's gradient. The K
  problems are solved together (mtlcore.bounded_quadratic), at any K.

  Args:
    grads: float32 [K, P].
    ridge: added to the Gram matrix's diagonal, relative to its largest entry (keeps the
      problem positive definite when gradients are parallel or zero).
    labelled: bool [K] or None (all).
  Returns:
    ([P], weights K mean_i u_i [K]).
  """
  k = grads.shape[0]
  grads, gram, labelled = _masked(grads, labelled)
  lower = tf.eye(k, dtype=tf.float64) * tf.cast(labelled, tf.float64)[:, None]
  u = bounded_quadratic.solve(_ridged(gram, ridge), tf.zeros([k, k], tf.float64), lower)
  return _combine(grads, tf.reduce_sum(u, axis=0))


def dualproj(grads, ridge=RIDGE, labelled=None):
  """DualProj (Quinton & Rey 2024): the gradient of the sum projected onto the dual cone of
  the task gradients: G^T u with u = argmin_{u >= 1} u^T GG^T u. The sum itself when it
  conflicts with no task; never conflicts with any task's gradient.

  Args and returns as `upgrad` (weights u [K], >= 1 for labelled tasks).
  """
  grads, gram, labelled = _masked(grads, labelled)
  lower = tf.cast(labelled, tf.float64)[None]
  u = bounded_quadratic.solve(_ridged(gram, ridge), tf.zeros_like(lower), lower)
  return _combine(grads, u[0])


# ----------------------------------------------------------------- multi-objective solutions


def mgda(grads, ridge=RIDGE, labelled=None):
  """MGDA (Sener & Koltun 2018; Désidéri 2012): the min-norm point of the convex hull of the
  task gradients, G^T w with w = argmin_{w in simplex} w^T GG^T w. A common descent direction
  for every task unless the point is 0 (the gradients are Pareto-stationary).

  Solved exactly (not by the paper's Frank-Wolfe): with u = argmin_{u >= 0} 1/2 u^T Q u - 1^T u
  (Q the ridged Gram matrix), w = u / 1^T u satisfies the simplex problem's KKT conditions
  (Q w = 1 / 1^T u + multipliers >= 0 on w's zeros).

  Paper's scale: the weights sum to 1 (with equal gradients, the direction is one of them, not
  their sum: a learning rate tuned for `sum` is K times too small).

  Args and returns as `upgrad` (weights w [K] on the simplex, 0 for unlabelled tasks).
  """
  k = grads.shape[0]
  grads, gram, labelled = _masked(grads, labelled)
  linear = -tf.cast(labelled, tf.float64)[None]
  u = bounded_quadratic.solve(_ridged(gram, ridge), linear, tf.zeros([1, k], tf.float64))[0]
  u = tf.cast(u, tf.float64)
  return _combine(grads, u / tf.maximum(tf.reduce_sum(u), 1e-300))


def imtl_g(grads, ridge=RIDGE, labelled=None):
  """IMTL-G (Liu et al. 2021, "Towards impartial multi-task learning"): the combination
  g = sum_k a_k g_k, sum_k a_k = 1, whose projections onto every task's unit gradient u_k are
  equal (g . u_i = g . u_j): no task is favoured. The paper's closed form
  a_{2..K} = g_1 U^T (D U^T)^{-1} is this linear system; solved here as
  [N, -1; 1^T, 0] [a; t] = [0; 1] with N_ij = u_i . g_j (t the common projection), which
  needs no task singled out. Unlabelled tasks get a_k = 0 (their rows of the system pinned).

  Paper's scale: the weights sum to 1.

  Args and returns as `upgrad`; `ridge` is added to N's diagonal (relative to its largest
  entry) so that parallel gradients share the weight instead of making N singular.
  """
  k = grads.shape[0]
  grads, gram, labelled = _masked(grads, labelled)
  norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
  n = gram / tf.maximum(norms, 1e-300)[:, None]  # u_i . g_j
  n = n + ridge * tf.maximum(tf.reduce_max(norms), 1e-300) * tf.eye(k, dtype=tf.float64)
  on = labelled[:, None]
  n = tf.where(on & labelled[None, :], n, tf.eye(k, dtype=tf.float64))
  column = tf.where(labelled, -1.0, 0.0)[:, None]
  row = tf.concat([tf.cast(labelled, tf.float64), tf.zeros([1], tf.float64)], 0)[None]
  system = tf.concat([tf.concat([n, tf.cast(column, tf.float64)], 1), row], 0)
  rhs = tf.concat([tf.zeros([k], tf.float64), tf.ones([1], tf.float64)], 0)[:, None]
  a = tf.linalg.solve(system, rhs)[:k, 0]
  return _combine(grads, tf.where(labelled, a, 0.0))


def nash_mtl(grads, ridge=RIDGE, labelled=None, iterations=50, tolerance=1e-10):
  """Nash-MTL (Navon et al. 2022): the Nash bargaining solution, direction G^T a with a > 0
  solving GG^T a = 1 / a (elementwise): each task's utility g_i . d is the inverse of its
  weight. This is the stationary point of the strictly convex 1/2 a^T Q a - sum_i log a_i
  (Q the ridged Gram matrix), found by damped Newton steps (the function is self-concordant:
  a step of 1 / (1 + decrement) stays positive and converges), which replaces the paper's
  sequence of convex programs solved with cvxpy. Stops when the Newton decrement^2 / 2, the
  gap to the optimum, is below `tolerance` or after `iterations` steps. FairGrad with
  alpha = 1 (`fairgrad`).

  Paper's scale: with one task the direction is g / |g|; with K orthogonal gradients of equal
  norm s it is their sum / s. Exactly opposed gradients have no bargaining solution (the
  objective is unbounded without the ridge); with it, the weights grow as 1 / sqrt(ridge) and
  the direction cancels to ~0.

  Args and returns as `upgrad` (weights a [K], 0 for unlabelled tasks and tasks whose
  gradient is exactly 0).
  """
  return _alpha_fair(grads, 1.0, ridge, labelled, iterations, tolerance)


def fairgrad(grads, alpha=1.0, ridge=RIDGE, labelled=None, iterations=50, tolerance=1e-10):
  """FairGrad (Ban & Ji 2024, "Fair resource allocation in multi-task learning"): the
  alpha-fair allocation of the update among the tasks, direction G^T w with w > 0 solving
  GG^T w = w^(-1/alpha) (elementwise): the maximiser of sum_i (g_i . d)^(1 - alpha) /
  (1 - alpha) over d in the gradients' span (log for alpha = 1: Nash-MTL's proportional
  fairness; alpha -> infinity tends to equal utilities g_i . d, max-min fairness). Solved as
  the stationary point of the strictly convex 1/2 w^T Q w - sum_i phi(w_i), phi' = w^(-1/alpha),
  by damped Newton steps kept inside w > 0 (the paper solves the same equations with
  scipy's least_squares); stops as `nash_mtl`.

  Paper's scale: with one task of gradient g the direction is g |g|^(-2 alpha / (alpha + 1))
  (g / |g| at alpha = 1); the weights solve the equations above and do not sum to 1.

  Args:
    grads: float32 [K, P]; alpha: > 0; ridge, labelled, iterations, tolerance: as
      `nash_mtl`.
  Returns:
    ([P], w [K]).
  """
  return _alpha_fair(grads, alpha, ridge, labelled, iterations, tolerance)


def _alpha_fair(grads, alpha, ridge, labelled, iterations, tolerance):
  """G^T w with w > 0 solving Q w = w^(-1/alpha) on the labelled tasks with a non-zero
  gradient (Q the ridged Gram matrix): damped Newton on 1/2 w^T Q w - sum phi(w_i)."""
  k = grads.shape[0]
  grads, gram, labelled = _masked(grads, labelled)
  # A task whose gradient is exactly 0 has no utility to bargain with: it takes no part.
  labelled &= tf.linalg.diag_part(gram) > 0
  q = _ridged(gram, ridge)
  on = tf.cast(labelled, tf.float64)
  eye = tf.eye(k, dtype=tf.float64)
  power = -1.0 / alpha
  # Start where the diagonal alone would put the answer: Q_ii w = w^(-1/alpha).
  start = on * tf.pow(tf.maximum(tf.linalg.diag_part(q), 1e-300), -alpha / (alpha + 1.0))

  def newton(i, w, gap):
    del gap
    safe = tf.where(labelled, w, 1.0)
    gradient = (tf.linalg.matvec(q, w) - tf.pow(safe, power)) * on
    hessian = tf.where(labelled[:, None] & labelled[None, :],
                       q + tf.linalg.diag(tf.pow(safe, power - 1.0) / alpha), eye)
    step = tf.linalg.solve(hessian, -gradient[:, None])[:, 0]
    decrement = tf.maximum(-tf.reduce_sum(gradient * step), 0.0)  # lambda^2
    damping = tf.where(decrement > 0.25 * 0.25, 1.0 / (1.0 + tf.sqrt(decrement)), 1.0)
    # Never to or past w = 0 (self-concordance keeps alpha = 1's damped step inside).
    shrink = tf.reduce_min(tf.where(labelled & (step < 0), -0.99 * safe / step, 1.0))
    return i + 1, (w + tf.minimum(damping, shrink) * step) * on, decrement / 2.0

  _, w, _ = tf.while_loop(lambda i, w, gap: (i < iterations) & (gap > tolerance), newton,
                          (tf.constant(0), start, tf.constant(float("inf"), tf.float64)))
  return _combine(grads, w)


def aligned_mtl(grads, labelled=None, rank_tolerance=1e-6):
  """Aligned-MTL (Senushkin et al. 2023): the gradients' rows are aligned to an orthogonal
  set of equal norms, the smallest singular value's, and summed: G^T a with a = B 1,
  B = sqrt(lambda_min) V Lambda^{-1/2} V^T from the eigendecomposition GG^T = V Lambda V^T
  over the eigenvalues above `rank_tolerance` times the largest (the paper's rank cut-off),
  lambda_min the smallest of those. The aligned rows B G have Gram matrix lambda_min times the
  identity (on the gradients' span): the system's condition number is 1. With orthogonal
  gradients of equal norm it is the gradient of the sum.

  Paper's scale (the smallest singular value's), unit preference weights.

  Args:
    grads: float32 [K, P]; labelled: bool [K] or None (all; an unlabelled zero row falls
      below the rank cut-off and gets weight 0).
  Returns:
    ([P], a [K]).
  """
  grads, gram, labelled = _masked(grads, labelled)
  values, vectors = tf.linalg.eigh(gram)
  kept = values > rank_tolerance * tf.maximum(tf.reduce_max(values), 1e-300)
  inverse_root = tf.where(kept, 1.0 / tf.sqrt(tf.where(kept, values, 1.0)), 0.0)
  smallest = tf.reduce_min(tf.where(kept, values, tf.constant(float("inf"), tf.float64)))
  smallest = tf.where(tf.reduce_any(kept), smallest, 0.0)
  b = tf.sqrt(smallest) * tf.linalg.matmul(vectors * inverse_root[None], vectors,
                                           transpose_b=True)
  return _combine(grads, tf.where(labelled, tf.reduce_sum(b, axis=1), 0.0))


def config(grads, labelled=None, rank_tolerance=1e-6):
  """ConFIG (Liu et al. 2024, "ConFIG: towards conflict-free training of physics informed
  neural networks"): the direction whose cosine with every task's gradient is the same,
  g_u = y / |y| with y = (U^T)^+ 1 (U = [u_1 .. u_K], the unit gradients as columns; the
  pseudo-inverse from the eigendecomposition of the unit gradients' Gram matrix, over the
  eigenvalues above `rank_tolerance` times the largest), scaled by the sum of the gradients'
  projections on it: (sum_k g_k . g_u) g_u. Every task's gradient has a positive projection on
  it whenever 1 is in the span (no exact opposition). Exactly opposed gradients leave 1
  outside it: y = 0 and the direction is 0.

  Paper's scale (the sum of projections), which is `sum`'s direction for orthogonal gradients
  of equal norm and for parallel ones.

  Args and returns as `aligned_mtl`.
  """
  grads, gram, labelled = _masked(grads, labelled)
  norms = tf.sqrt(tf.maximum(tf.linalg.diag_part(gram), 0.0))
  inverse = tf.where(norms > 0.0, 1.0 / tf.where(norms > 0.0, norms, 1.0), 0.0)
  unit_gram = gram * inverse[:, None] * inverse[None, :]
  values, vectors = tf.linalg.eigh(unit_gram)
  kept = values > rank_tolerance * tf.maximum(tf.reduce_max(values), 1e-300)
  pinv = tf.linalg.matmul(vectors * tf.where(kept, 1.0 / tf.where(kept, values, 1.0), 0.0)[None],
                          vectors, transpose_b=True)
  ones = tf.cast(labelled, tf.float64)
  a = tf.linalg.matvec(pinv, ones)  # y = sum_k a_k u_k.
  y_norm = tf.sqrt(tf.maximum(tf.tensordot(a, tf.linalg.matvec(unit_gram, a), 1), 0.0))
  on_raw = a * inverse  # y = sum_k on_raw_k g_k.
  positive = y_norm > 1e-12 * tf.maximum(tf.reduce_max(values), 1e-300)
  safe = tf.where(positive, y_norm, 1.0)
  projections = tf.reduce_sum(ones * tf.linalg.matvec(gram, on_raw)) / safe  # sum_k g_k . g_u
  weights = tf.where(positive, on_raw * projections / safe, 0.0)
  return _combine(grads, tf.where(labelled, weights, 0.0))


# ---------------------------------------------------------------------- moving averages


def db_mtl(grads, buffer, rate, labelled=None):
  """DB-MTL's gradient-magnitude balancing (Lin & Zhang 2023, "Dual-balancing for multi-task
  learning"), one step: each labelled task's moving average of its gradient moves,
  m_k <- rate m_k + (1 - rate) g_k, and the direction is sum_k (max_j |m_j| / |m_k|) m_k,
  every task's average scaled to the largest's norm. `grads` are the gradients of the
  log-losses (the method's loss-scale balancing: `DualBalancing.task_losses`). An unlabelled
  task's average is kept as it is and takes no part; a zero average gets weight 0.

  Paper's scale (every task at the largest norm; no bias correction of the averages, as the
  paper's Algorithm 1).

  Args:
    grads: float32 [K, P]; buffer: float32 [K, P], the averages (start 0); rate: float32
      scalar in [0, 1], the paper's beta_t = beta / t^sigma; labelled: bool [K] or None (all).
  Returns:
    (direction [P], weights [K], new buffer [K, P]).
  """
  labelled, mask, _ = _mask(labelled, grads.shape[0])
  moved = tf.where(labelled[:, None], rate * buffer + (1.0 - rate) * grads, buffer)
  norms = tf.norm(moved, axis=1) * mask
  weights = tf.where(norms > 0, tf.reduce_max(norms) / tf.maximum(norms, 1e-30), 0.0)
  return tf.linalg.matvec(moved, weights, transpose_a=True), weights, moved


def simplex_projection(values, mass, labelled):
  """The Euclidean projection of `values` [K] (float64) onto {w >= 0, sum w = mass} over the
  labelled coordinates (Duchi et al. 2008: sort, cumulative sums, the largest index whose
  threshold keeps it positive); the unlabelled coordinates are 0."""
  k = values.shape[0]
  low = tf.reduce_min(values) - tf.abs(mass) - 1.0  # Sorts below every labelled value.
  v = tf.where(labelled, values, low)
  ordered = tf.sort(v, direction="DESCENDING")
  sums = tf.cumsum(ordered)
  index = tf.range(1, k + 1, dtype=values.dtype)
  count = tf.reduce_sum(tf.cast(labelled, values.dtype))
  keeps = (ordered - (sums - mass) / index > 0) & (index <= count)
  rho = tf.maximum(tf.reduce_sum(tf.cast(keeps, tf.int32)), 1)
  theta = (tf.gather(sums, rho - 1) - mass) / tf.cast(rho, values.dtype)
  return tf.where(labelled, tf.maximum(values - theta, 0.0), tf.zeros_like(values))


def moco(grads, tracked, weights, beta, gamma, rho=0.0, labelled=None):
  """MoCo (Fernando et al. 2023, "Mitigating gradient bias in multi-objective learning"), one
  step of its Algorithm 1: each labelled task's tracked gradient moves towards its stochastic
  gradient, y_k <- y_k - beta (y_k - g_k); the simplex weights take a projected gradient step
  on (1/2) |Y lambda|^2 + (rho/2) |lambda|^2, lambda <- Proj(lambda - gamma (Y Y^T + rho I)
  lambda); the direction is Y^T lambda (with the new y and lambda). An unlabelled task keeps its
  y_k and lambda_k and takes no part: the labelled weights are projected onto their share of
  the simplex (1 minus the unlabelled weights), so lambda stays on the simplex.

  Paper's scale (a convex combination of the tracked gradients; the authors' multi-task code,
  as LibMTL's, also rescales each g_k to the norm of its loss and replaces the projection by a
  softmax: not done here).

  Args:
    grads: float32 [K, P]; tracked: float32 [K, P], the y_k (start 0); weights: float32 [K] on
      the simplex (start 1/K); beta, gamma: the step's rates (the paper's beta_t, gamma_t);
      rho: the weights' l2 regulariser; labelled: bool [K] or None (all).
  Returns:
    (direction [P], the step's weights [K] (0 for unlabelled tasks), new tracked [K, P], new
     weights [K]).
  """
  labelled, mask, _ = _mask(labelled, grads.shape[0])
  moved = tf.where(labelled[:, None], tracked - beta * (tracked - grads), tracked)
  live = moved * mask[:, None]
  gram = tf.cast(tf.linalg.matmul(live, live, transpose_b=True), tf.float64)
  k = grads.shape[0]
  lam = tf.cast(weights, tf.float64)
  regularised = gram + tf.cast(rho, tf.float64) * tf.eye(k, dtype=tf.float64)
  step = lam - tf.cast(gamma, tf.float64) * tf.linalg.matvec(regularised,
                                                              lam * tf.cast(mask, tf.float64))
  share = tf.reduce_sum(tf.where(labelled, lam, 0.0))
  projected = simplex_projection(step, share, labelled)
  new = tf.cast(tf.where(labelled, projected, lam), tf.float32)
  used = tf.where(labelled, new, 0.0)
  return tf.linalg.matvec(moved, used, transpose_a=True), used, moved, new


def excess_mtl(grads, squares, initial, seen, weights, step_size, labelled=None):
  """ExcessMTL (He et al. 2024, "Robust multi-task learning with excess risks"), one step:
  each labelled task's squared gradients accumulate (AdaGrad's diagonal, squares_k += g_k^2),
  its excess risk is estimated as e_k = g_k . (g_k / sqrt(squares_k + 1e-7)), divided by its
  estimate at the task's first labelled step, and its loss weight grows by exponentiated
  gradient ascent, w_k <- w_k exp(step_size e_k / e_k^0); the weights are normalised to sum K
  (the labelled ones to their share, so an unlabelled task's weight stays as it is). A task's
  first labelled step only records e_k^0, as the authors' code. The direction is
  G^T w (weight 0 for unlabelled tasks).

  Paper's scale (weights summing to K: `sum`'s direction while they are all 1).

  Args:
    grads: float32 [K, P]; squares: float32 [K, P] (start 0); initial: float32 [K] (e_k^0);
    seen: bool [K] (whether e_k^0 is set); weights: float32 [K] (start 1); step_size: the
    paper's robust step size; labelled: bool [K] or None (all).
  Returns:
    (direction [P], the step's weights [K], squares, initial, seen, weights).
  """
  labelled, mask, _ = _mask(labelled, grads.shape[0])
  squares = tf.where(labelled[:, None], squares + tf.square(grads), squares)
  excess = tf.reduce_sum(tf.square(grads) / tf.sqrt(squares + 1e-7), axis=1)
  first = labelled & ~seen
  initial = tf.where(first, excess, initial)
  ratio = excess / tf.where(initial > 0, initial, 1.0)
  moving = labelled & seen
  # w_k exp(step e_k / e_k^0), normalised, in log space: the exponent can pass float32's
  # range (a first estimate near 0, from a flat start), where w exp(.) / sum would be
  # inf / inf.
  logits = tf.math.log(tf.maximum(weights, 1e-30)) + tf.where(moving, step_size * ratio, 0.0)
  logits = tf.where(labelled, logits, -float("inf"))
  k = float(grads.shape[0])
  share = k - tf.reduce_sum(tf.where(labelled, 0.0, weights))
  new = tf.where(labelled, share * tf.nn.softmax(logits), weights)
  used = tf.where(labelled, new, 0.0)
  return (tf.linalg.matvec(grads * mask[:, None], used, transpose_a=True), used, squares,
          initial, seen | labelled, new)


def sdmgrad(samples, weights, lamda=0.3, iterations=20, labelled=None):
  """SDMGrad (Xiao et al. 2023, "Direction-oriented multi-objective learning: simple and
  provable stochastic algorithms"), one step as the authors' code (which LibMTL ports), from
  three independent samples of the K task gradients. The first two, xi and xi', give the
  Gram matrix A = G_xi G_xi'^T, divided by the square of the mean of its diagonal's square
  roots (negative diagonal entries as 0). The simplex weights w (state) take `iterations`
  steps of projected gradient descent with momentum on it (rate 5, momentum 0.5, the
  momentum restarting each step; gradient A w + lamda A 1/K). The direction is
  (G_zeta^T w + lamda mean_k g_zeta,k) / (1 + lamda), zeta the third sample. Over the
  labelled tasks alone: the mean is theirs, and their weights are projected onto their share
  of the simplex (an unlabelled task's w_k is kept and takes no part).

  Paper's scale (a convex combination of the third sample's gradients). The weights' steps
  at rate 5 on a Gram matrix normalised to unit diagonal are sensitive to rounding: on two
  tasks, rows 2.4e-7 apart (compiled by XLA against eager) gave weights 0.09 apart after
  the 20 steps (measured); the direction stays a convex combination either way.

  Args:
    samples: float32 [3, K, P]: the samples xi, xi', zeta; weights: float32 [K] on the
      simplex (start 1/K); lamda: the pull towards the mean gradient; iterations: the
      weights' steps; labelled: bool [K] or None (all).
  Returns:
    (direction [P], the weights on zeta's rows [K], new simplex weights [K]).
  """
  k = samples.shape[1]
  labelled, mask, count = _mask(labelled, k)
  live = samples * mask[None, :, None]
  gram = tf.cast(tf.linalg.matmul(live[0], live[1], transpose_b=True), tf.float64)
  diagonal = tf.maximum(tf.linalg.diag_part(gram), 0.0)
  mask64 = tf.cast(mask, tf.float64)
  scale = tf.reduce_sum(tf.sqrt(diagonal) * mask64) / tf.cast(count, tf.float64)
  gram = gram / (scale * scale + 1e-8)
  pull = tf.cast(lamda, tf.float64) * tf.linalg.matvec(gram, mask64 / tf.cast(count, tf.float64))
  w = tf.cast(weights, tf.float64)
  share = tf.reduce_sum(tf.where(labelled, w, 0.0))

  def body(t, w, momentum):
    momentum = 0.5 * momentum + tf.linalg.matvec(gram, w * mask64) + pull
    w = tf.where(labelled, simplex_projection(w - 5.0 * momentum, share, labelled), w)
    return t + 1, w, momentum

  _, w, _ = tf.while_loop(lambda t, *_: t < iterations, body,
                          (tf.constant(0), w, tf.zeros_like(w)))
  new = tf.cast(w, tf.float32)
  used = (tf.where(labelled, new, 0.0) + lamda * mask / count) / (1.0 + lamda)
  return tf.linalg.matvec(live[2], used, transpose_a=True), used, new


def modo(samples, weights, gamma=0.001, rho=0.1, labelled=None):
  """MoDo (Chen et al. 2023, "Three-way trade-off in multi-objective learning: optimization,
  generalization and conflict-avoidance"), one step of its double sampling: from three
  independent samples of the K task gradients, the simplex weights (state) take one projected
  step lambda <- Proj(lambda - gamma (G_1 G_2^T lambda + rho lambda)), G_1 and G_2 the first
  two samples (an unbiased estimate of the Gram matrix's product), and the direction is
  G_3^T lambda with the new weights. Over the labelled tasks alone: their weights are
  projected onto their share of the simplex; an unlabelled task's is kept and takes no part.

  Paper's scale (a convex combination of the third sample's gradients).

  Args:
    samples: float32 [3, K, P]; weights: float32 [K] on the simplex (start 1/K); gamma: the
      weights' learning rate; rho: their l2 regulariser; labelled: bool [K] or None (all).
  Returns:
    (direction [P], the step's weights [K] (0 for unlabelled tasks), new weights [K]).
  """
  k = samples.shape[1]
  labelled, mask, _ = _mask(labelled, k)
  live = samples * mask[None, :, None]
  lam = tf.cast(weights, tf.float64)
  mask64 = tf.cast(mask, tf.float64)
  through = tf.linalg.matvec(tf.cast(live[1], tf.float64), lam * mask64, transpose_a=True)
  product = tf.linalg.matvec(tf.cast(live[0], tf.float64), through)
  step = lam - tf.cast(gamma, tf.float64) * (product + tf.cast(rho, tf.float64) * lam * mask64)
  share = tf.reduce_sum(tf.where(labelled, lam, 0.0))
  new = tf.cast(tf.where(labelled, simplex_projection(step, share, labelled), lam), tf.float32)
  used = tf.where(labelled, new, 0.0)
  return tf.linalg.matvec(live[2], used, transpose_a=True), used, new


def cosines_to_the_rest(grads):
  """[K]: cosine between each task's gradient and the sum of the other tasks' (0 if either
  is zero)."""
  total = tf.reduce_sum(grads, axis=0, keepdims=True)
  rest = total - grads
  dot = tf.reduce_sum(grads * rest, axis=1)
  norms = tf.norm(grads, axis=1) * tf.norm(rest, axis=1)
  return tf.where(norms > 0, dot / tf.maximum(norms, 1e-30), 0.0)
