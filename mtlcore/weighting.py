"""Joint-mode weighting: how the task losses of one batch become one update.

Two families, one interface (`Weighting`):
- loss weighting (`sum`, `static`, `uncertainty`, `dwa`, `gradnorm`): the update is the
  gradient of sum_k w_k L_k (+ a regulariser for `uncertainty`); one backward pass, as plain
  `sum` (`gradnorm` adds one per task, from the loss down to the last shared layer only).
- gradient methods (`pcgrad`, `cagrad`, `upgrad`): each task's gradient on the shared variables
  is computed separately (one backward pass through the trunk per task), the K gradients,
  flattened to a [K, P] matrix, are combined into one [P] direction, and each head gets its
  own task's gradient as usual.

The math is in pure functions on tensors (`uncertainty_total`, `dwa_weights`,
`gradnorm_weight_gradient`, `pcgrad`, `cagrad`, `upgrad`), checked against numpy references
in tests/test_weighting.py. The modules around them hold what must survive a restart (learned
log-variances, DWA's loss averages, GradNorm's weights) as variables, so a checkpoint of the
trainer holds them and resume stays exact. Everything runs inside the compiled step. Every
method reports per task the weight it gave the task's loss
(`weights`), and the gradient methods the cosine between the task's gradient and the sum of
the others' (`cosines`); the joint trainer logs both per task (TASK/weight, TASK/cosine).

Losses here are each task's loss of the batch (a Ratio divided out); a task with no label in
the batch has loss 0 and `labelled` False.
"""

import itertools
import math

import tensorflow as tf

from mtlcore.choices import WEIGHTINGS as METHODS
from mtlcore.errors import ConfigError

MAX_UPGRAD_TASKS = 8  # Its exact quadratic-program solve enumerates 2^K active sets.


# ---------------------------------------------------------------------------- pure functions


def uncertainty_total(losses, log_variances, labelled):
  """Homoscedastic uncertainty weighting (Kendall, Gal & Cipolla 2018), classification form.

  total = sum_k [exp(-s_k) L_k + s_k / 2] over labelled tasks, s_k = log sigma_k^2 learned:
  a task whose loss stays high is given a larger variance and so a smaller weight exp(-s_k).

  Args:
    losses, log_variances: float32 [K].
    labelled: bool [K]; an unlabelled task adds neither term (its s_k gets no gradient).
  Returns:
    (total scalar, weights exp(-s_k) [K]).
  """
  weights = tf.exp(-log_variances)
  terms = weights * losses + 0.5 * log_variances
  return tf.reduce_sum(tf.where(labelled, terms, 0.0)), weights


def dwa_weights(previous_means, temperature):
  """Dynamic Weight Average (Liu, Johns & Davison 2019).

  w_k = K exp(r_k / T) / sum_i exp(r_i / T), r_k = Lbar_k(n-1) / Lbar_k(n-2): a task whose
  loss fell more slowly over the last period gets more weight. The weights sum to K.

  Args:
    previous_means: float32 [2, K], the mean loss of each task over the period before last
      (row 0) and the last period (row 1).
    temperature: T > 0.
  Returns:
    weights [K].
  """
  rates = previous_means[1] / tf.maximum(previous_means[0], 1e-12)
  k = tf.cast(tf.shape(rates)[0], tf.float32)
  return k * tf.nn.softmax(rates / temperature)


def gradnorm_weight_gradient(weights, layer_norms, loss_ratios, alpha, labelled=None):
  """GradNorm (Chen et al. 2018): the gradient of its loss with respect to the task weights.

  L_grad = sum_k |G_k - Gbar r_k^alpha|, G_k = w_k |grad_W L_k| the weighted task gradient's
  norm on the last shared layer W, Gbar = mean_k G_k and r_k = Ltilde_k / mean_j Ltilde_j with
  Ltilde_k = L_k / L_k(0) (the target Gbar r_k^alpha is held constant, as in the paper).
  Tasks that train slower (larger r_k) are pushed towards larger gradients.

  Args:
    weights, layer_norms (|grad_W L_k|), loss_ratios (L_k / L_k(0)): float32 [K].
    alpha: the asymmetry, >= 0.
    labelled: bool [K] or None (all): the sums and means run over these tasks only (a task
      with no label in the batch has no loss and no gradient to compare); the others get 0.
  Returns:
    dL_grad / dw [K].
  """
  if labelled is None:
    labelled = tf.ones_like(weights, tf.bool)
  count = tf.maximum(tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)

  def mean(x):
    return tf.reduce_sum(tf.where(labelled, x, 0.0)) / count

  norms = weights * layer_norms
  rates = loss_ratios / tf.maximum(mean(loss_ratios), 1e-12)
  target = tf.stop_gradient(mean(norms) * rates**alpha)
  return tf.where(labelled, tf.sign(norms - target) * layer_norms, 0.0)


def pcgrad(grads, orders):
  """Gradient surgery (Yu et al. 2020): PCGrad's combined direction.

  For each task i, its gradient g_i is projected, task by task in `orders[i]`, onto the normal
  plane of every other task's (original) gradient g_j it conflicts with (g_i . g_j < 0):
  g_i <- g_i - (g_i . g_j) / |g_j|^2 g_j. The result is the sum of the projected gradients:
  the gradient of the sum of the losses when no two tasks conflict.

  Args:
    grads: float32 [K, P], one row per task (zeros for a task with no label).
    orders: int32 [K, K - 1], orders[i] the other tasks in the order task i is projected.
  Returns:
    [P].
  """
  k = grads.shape[0]
  squared = tf.reduce_sum(grads * grads, axis=1)  # [K]
  projected = []
  for i in range(k):
    g = grads[i]
    for position in range(k - 1):
      j = orders[i, position]
      other = tf.gather(grads, j)
      dot = tf.reduce_sum(g * other)
      coefficient = tf.where(dot < 0, dot / tf.maximum(tf.gather(squared, j), 1e-20), 0.0)
      g = g - coefficient * other
    projected.append(g)
  return tf.add_n(projected)


def _labelled_mask(labelled, k):
  """(bool [K], float32 [K], count of labelled tasks >= 1) of `labelled` (None: all)."""
  labelled = tf.ones([k], tf.bool) if labelled is None else tf.convert_to_tensor(labelled)
  mask = tf.cast(labelled, tf.float32)
  return labelled, mask, tf.maximum(tf.reduce_sum(mask), 1.0)


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
  labelled, mask, m = _labelled_mask(labelled, k)
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
  _, mask, m = _labelled_mask(labelled, k)
  grads = grads * mask[:, None]
  gram = tf.linalg.matmul(grads, grads, transpose_b=True)
  w = cagrad_simplex_weights(gram, c, iterations, labelled)
  g0 = tf.reduce_sum(grads, axis=0) / m
  gw = tf.linalg.matvec(grads, w, transpose_a=True)
  g0_norm = tf.sqrt(tf.maximum(tf.reduce_sum(gram) / (m * m), 0.0))
  gw_norm = tf.norm(gw)
  direction = g0 + c * g0_norm / tf.maximum(gw_norm, 1e-20) * gw
  return m * direction / (1.0 + c * c), w


def min_quadratic_above(q, lower):
  """argmin_u u^T q u subject to u >= lower (elementwise), for q [K, K] positive definite.

  Exact: tries every active set (the coordinates held at their bound), solves the others'
  linear system and keeps the candidate that satisfies the KKT conditions with the smallest
  objective. K is static and small (2^K solves of at most K x K).
  """
  k = q.shape[0]
  best, best_value = lower, tf.constant(float("inf"))
  for free_mask in itertools.product([False, True], repeat=k):
    free = [j for j in range(k) if free_mask[j]]
    fixed = [j for j in range(k) if not free_mask[j]]
    if free:
      q_ff = tf.gather(tf.gather(q, free, axis=0), free, axis=1)
      rhs = tf.zeros([len(free)])
      if fixed:
        q_fb = tf.gather(tf.gather(q, free, axis=0), fixed, axis=1)
        rhs = -tf.linalg.matvec(q_fb, tf.gather(lower, fixed))
      u_free = tf.linalg.solve(q_ff, rhs[:, None])[:, 0]
      u = tf.scatter_nd([[j] for j in free], u_free, [k])
      if fixed:
        u += tf.scatter_nd([[j] for j in fixed], tf.gather(lower, fixed), [k])
    else:
      u = lower
    gradient = tf.linalg.matvec(q, u)
    slack = 1e-6 * tf.reduce_max(tf.abs(tf.linalg.diag_part(q)))
    feasible = tf.reduce_all(u >= lower - 1e-6)
    if fixed:  # A coordinate held at its bound must not want to go lower.
      feasible &= tf.reduce_all(tf.gather(gradient, fixed) >= -slack)
    value = tf.tensordot(u, gradient, 1)
    better = feasible & (value < best_value)
    best = tf.where(better, u, best)
    best_value = tf.where(better, value, best_value)
  return best


def upgrad(grads, ridge=1e-6):
  """UPGrad (Quinton & Rey 2024, "Jacobian descent for multi-objective optimization").

  Each task gradient g_i is projected onto the dual cone of all task gradients (the
  directions that conflict with none), and the projections are averaged. In the Gram
  matrix's terms the projection of g_i is G^T u_i with u_i = argmin_{u >= e_i} u^T GG^T u,
  so the result is G^T (mean_i u_i). Multiplied by K, as CAGrad here: with no conflict it is
  the gradient of the sum. The result never conflicts with any task's gradient.

  Args:
    grads: float32 [K, P], K <= MAX_UPGRAD_TASKS.
    ridge: added to the Gram matrix's diagonal, relative to its largest entry (keeps the
      problem positive definite when gradients are parallel or zero).
  Returns:
    ([P], weights K mean_i u_i [K]).
  """
  k = grads.shape[0]
  gram = tf.linalg.matmul(grads, grads, transpose_b=True)
  q = gram + (ridge * tf.maximum(tf.reduce_max(tf.abs(gram)), 1e-30)) * tf.eye(k)
  u = tf.add_n([min_quadratic_above(q, tf.one_hot(i, k)) for i in range(k)])  # k * mean
  return tf.linalg.matvec(grads, u, transpose_a=True), u


def cosines_to_the_rest(grads):
  """[K]: cosine between each task's gradient and the sum of the other tasks' (0 if either
  is zero)."""
  total = tf.reduce_sum(grads, axis=0, keepdims=True)
  rest = total - grads
  dot = tf.reduce_sum(grads * rest, axis=1)
  norms = tf.norm(grads, axis=1) * tf.norm(rest, axis=1)
  return tf.where(norms > 0, dot / tf.maximum(norms, 1e-30), 0.0)


# ----------------------------------------------------------------------------------- modules


class Weighting(tf.Module):
  """Base: fixed weights (1 each for `sum`, the given ones for `static`).

  `needs_task_gradients`: whether the trainer must give `combine_gradients` each task's
  gradient on the shared variables (gradient methods) instead of differentiating `total`.
  """

  needs_task_gradients = False
  needs_layer_norms = False  # GradNorm: the trainer gives after_step |grad_W L_k| [K].

  def __init__(self, tasks, weights=None, name=None):
    super().__init__(name=name)
    self.task_names = tuple(tasks)
    weights = [1.0] * len(self.task_names) if weights is None else list(weights)
    self.fixed_weights = tf.constant(weights, tf.float32)

  def total(self, losses, labelled):
    """(total loss to differentiate, weights [K]) for losses [K], labelled bool [K]."""
    del labelled
    return tf.reduce_sum(self.fixed_weights * losses), self.fixed_weights

  def combine_gradients(self, grads, seed, labelled):
    """Gradient methods: [K, P] -> ([P], weights [K]); `seed` int64 [2] for random orders;
    `labelled` bool [K]: the tasks with a label in the batch (the others' rows are zero and
    take no part)."""
    raise NotImplementedError

  def after_step(self, losses, labelled, layer_norms=None):
    """Updates the method's running state after an applied step (DWA's averages, GradNorm's
    weights); fixed weights keep none."""
    del losses, labelled, layer_norms

  def task_variables(self):
    """{task: its own trained variables}: a step where the task has no label leaves them
    and their optimizer slots unchanged, as it leaves the task's head."""
    return {}


class Uncertainty(Weighting):
  """Learned log-variances s_k (start 0: weight 1), trained with the model's optimizer."""

  def __init__(self, tasks, name=None):
    super().__init__(tasks, name=name)
    # One variable per task, so that a task with no label leaves its own untouched.
    self.log_variances = [tf.Variable(0.0, name=f"log_variance_{t}") for t in self.task_names]

  def total(self, losses, labelled):
    return uncertainty_total(losses, tf.stack(self.log_variances), labelled)

  def task_variables(self):
    return {t: [v] for t, v in zip(self.task_names, self.log_variances)}


class DynamicWeightAverage(Weighting):
  """DWA over periods of `period` steps (the paper's epochs; here by default one pass over
  the joint stream). Weights are 1 until two periods have ended."""

  def __init__(self, tasks, *, period, temperature=2.0, name=None):
    super().__init__(tasks, name=name)
    if not isinstance(period, int) or period < 1:
      raise ConfigError(f"dwa period must be a positive integer, got {period!r}.")
    if not temperature > 0:
      raise ConfigError(f"dwa temperature must be positive, got {temperature!r}.")
    self.period, self.temperature = period, float(temperature)
    k = len(self.task_names)
    self.sums = tf.Variable(tf.zeros([k]), trainable=False, name="loss_sums")
    self.counts = tf.Variable(tf.zeros([k]), trainable=False, name="loss_counts")
    self.means = tf.Variable(tf.zeros([2, k]), trainable=False, name="period_means")
    self.periods = tf.Variable(0, dtype=tf.int64, trainable=False, name="periods_done")
    self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="steps_in_period")

  def current_weights(self):
    ones = tf.ones([len(self.task_names)])
    return tf.where(self.periods >= 2, dwa_weights(self.means, self.temperature), ones)

  def total(self, losses, labelled):
    weights = self.current_weights()
    return tf.reduce_sum(weights * losses), weights

  def after_step(self, losses, labelled, layer_norms=None):
    labelled = tf.cast(labelled, tf.float32)
    self.sums.assign_add(losses * labelled)
    self.counts.assign_add(labelled)
    self.steps.assign_add(1)

    def close_period():
      mean = self.sums / tf.maximum(self.counts, 1.0)
      self.means.assign(tf.stack([self.means[1], mean]))
      self.periods.assign_add(1)
      self.sums.assign(tf.zeros_like(self.sums))
      self.counts.assign(tf.zeros_like(self.counts))
      self.steps.assign(0)
      return tf.constant(0)

    tf.cond(self.steps >= self.period, close_period, lambda: tf.constant(0))


class GradNorm(Weighting):
  """GradNorm's weights, updated after every applied step by a normalised gradient step on
  its loss (`gradnorm_weight_gradient`), then clipped at 1e-3 and renormalised to sum to K.

  W, the last shared layer, is chosen by the joint trainer: the trunk layer that outputs the
  first representation any head reads (mtlcore.model.SharedTrunk.variables_of).
  L_k(0) is task k's loss at its first labelled step. Only labelled tasks move, and only
  they enter GradNorm's means (a batch without a task's labels compares nothing for that task).
  """

  needs_layer_norms = True

  def __init__(self, tasks, *, alpha=1.5, learning_rate=0.025, name=None):
    super().__init__(tasks, name=name)
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
      raise ConfigError(f"gradnorm alpha must be a non-negative number, got {alpha!r}.")
    self.alpha, self.learning_rate = float(alpha), float(learning_rate)
    k = len(self.task_names)
    self.weights = tf.Variable(tf.ones([k]), trainable=False, name="weights")
    self.initial_losses = tf.Variable(tf.zeros([k]), trainable=False, name="initial_losses")
    self.started = tf.Variable(tf.zeros([k], tf.bool), trainable=False, name="started")

  def total(self, losses, labelled):
    weights = tf.identity(self.weights)
    return tf.reduce_sum(weights * losses), weights

  def after_step(self, losses, labelled, layer_norms=None):
    first = labelled & ~self.started
    self.initial_losses.assign(tf.where(first, losses, self.initial_losses))
    self.started.assign(self.started | labelled)
    ratios = losses / tf.maximum(self.initial_losses, 1e-12)
    gradient = gradnorm_weight_gradient(self.weights, layer_norms, ratios, self.alpha,
                                        labelled)
    count = tf.maximum(tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)
    scale = tf.maximum(tf.reduce_sum(tf.where(labelled, layer_norms, 0.0)) / count, 1e-12)
    moved = self.weights - self.learning_rate * gradient / scale
    weights = tf.maximum(tf.where(labelled, moved, self.weights), 1e-3)
    k = float(len(self.task_names))
    self.weights.assign(k * weights / tf.reduce_sum(weights))


class PCGrad(Weighting):
  needs_task_gradients = True

  def combine_gradients(self, grads, seed, labelled):
    # An unlabelled task's zero row neither projects another row nor is changed: no mask.
    del labelled
    k = len(self.task_names)
    others = [[j for j in range(k) if j != i] for i in range(k)]
    if k > 2:  # A fresh random order per task and step (with two tasks there is one order).
      keys = tf.random.stateless_uniform([k, k - 1], seed=seed)
      orders = tf.gather(tf.constant(others, tf.int32),
                         tf.argsort(keys, axis=1), batch_dims=1)
    else:
      orders = tf.constant(others, tf.int32)
    return pcgrad(grads, orders), tf.ones([k])


class CAGrad(Weighting):
  needs_task_gradients = True

  def __init__(self, tasks, *, c=0.5, name=None):
    super().__init__(tasks, name=name)
    if not (isinstance(c, (int, float)) and math.isfinite(c) and c >= 0):
      raise ConfigError(f"cagrad c must be a non-negative number, got {c!r}.")
    self.c = float(c)

  def combine_gradients(self, grads, seed, labelled):
    del seed
    direction, w = cagrad(grads, self.c, labelled=labelled)
    return direction, w * len(self.task_names)


class UPGrad(Weighting):
  needs_task_gradients = True

  def __init__(self, tasks, name=None):
    super().__init__(tasks, name=name)
    if len(self.task_names) > MAX_UPGRAD_TASKS:
      raise ConfigError(f"--weighting=upgrad solves its projection exactly for up to "
                        f"{MAX_UPGRAD_TASKS} tasks, got {len(self.task_names)}.")

  def combine_gradients(self, grads, seed, labelled):
    # An unlabelled task's zero row has projection 0 and bounds no other row's: no mask.
    del seed, labelled
    return upgrad(grads)


def make_weighting(method, tasks, *, weights=None, period=None):
  """The Weighting for `method` (one of METHODS) over `tasks` (names, in order).

  weights: `static`'s per-task weights; period: `dwa`'s period in steps.
  """
  if method not in METHODS:
    raise ConfigError(f"--weighting must be one of {list(METHODS)}, got {method!r}.")
  if weights is not None and method not in ("sum", "static"):
    raise ConfigError(f"--task_weights are static loss weights; they do not combine with "
                      f"--weighting={method}.")
  if method in ("sum", "static"):
    return Weighting(tasks, weights, name="sum" if weights is None else "static")
  if method == "uncertainty":
    return Uncertainty(tasks, name=method)
  if method == "dwa":
    return DynamicWeightAverage(tasks, period=period or 1, name=method)
  if method == "gradnorm":
    return GradNorm(tasks, name=method)
  if method == "pcgrad":
    return PCGrad(tasks, name=method)
  if method == "upgrad":
    return UPGrad(tasks, name=method)
  return CAGrad(tasks, name=method)
