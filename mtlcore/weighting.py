"""Joint-mode weighting: how the task losses of one batch become one update.

Two families, one interface (`Weighting`), chosen by --weighting (mtlcore.choices.WEIGHTINGS)
with hyper-parameters from --weighting_options (their papers' defaults otherwise):
- loss weighting (`sum`, `static`, `uncertainty`, `dwa`, `gradnorm`, `rlw`, `imtl_l`, `gls`,
  `famo`, `stch`): the update is the gradient of sum_k w_k L_k (+ a regulariser for
  `uncertainty` and `imtl_l`; a function of the losses for `gls` and `stch`); one backward
  pass, as plain `sum` (`gradnorm` adds one per task, from the loss down to the last shared
  layer only; `famo` one forward pass, for the losses after the update).
- gradient methods (`pcgrad`, `gradvac`, `cagrad`, `upgrad`, `dualproj`, `mgda`, `imtl_g`,
  `imtl`, `nash_mtl`, `fairgrad`, `aligned_mtl`, `config`, `graddrop`, `db_mtl`, `moco`,
  `excess_mtl`, `sdmgrad`, `modo`; their pure functions are in
  mtlcore.gradient_methods and re-exported here under the same names): each task's
  gradient on the shared variables of the owner map (mtlcore.ownership) is computed
  separately, the K gradients, flattened to a [K, P] matrix, are combined into one [P]
  direction; each task-owned variable (a head, a task's trunk part) gets its own task's
  gradient as usual. `sdmgrad` and `modo` need three independent samples of the K gradients
  (`samples` = 3): the joint trainer splits the batch into three strided parts, runs a
  forward pass on each and gives the method their rows, [3 K, P].

The loss weightings' math is in pure functions here (`uncertainty_total`, `dwa_weights`,
`gradnorm_weight_gradient`, `gls_total`, `famo_total`, `famo_logit_gradient`), checked against
numpy references in tests/test_weighting.py (the gradient methods' in
tests/test_gradient_methods.py). The modules around them hold what must survive a restart
(learned log-variances and scales, DWA's loss averages, GradNorm's weights, GradVac's cosine
targets, FAMO's logits, STCH's warm-up losses, DB-MTL's [K, P] gradient averages, MoCo's
[K, P] tracked gradients and simplex weights, ExcessMTL's [K, P] squared-gradient sums and loss
weights, SDMGrad's and MoDo's simplex weights) as variables, so a checkpoint of the trainer
holds them and resume stays exact. Everything runs inside the compiled step. Every method
reports per task the weight it gave the task's loss (`weights`), and the gradient methods the cosine between
the task's gradient and the sum of the others' (`cosines`); the joint trainer logs both per
task (TASK/weight, TASK/cosine).

Losses here are each task's loss of the batch (a Ratio divided out); a task with no label in
the batch has loss 0 and `labelled` False.
"""

import functools
import math

import tensorflow as tf

from mtlcore import choices
from mtlcore.choices import WEIGHTINGS as METHODS
from mtlcore.errors import ConfigError
# The gradient methods' pure functions, under the names the flags use.
from mtlcore import gradient_methods
from mtlcore.gradient_methods import (aligned_mtl, cagrad, cagrad_simplex_weights,  # pylint: disable=unused-import
                                      config, cosines_to_the_rest, db_mtl, dualproj,
                                      excess_mtl, fairgrad,
                                      graddrop, gradvac, imtl_g, mgda, moco, modo, nash_mtl,
                                      pcgrad, sdmgrad, upgrad)


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


def gls_total(losses, labelled):
  """Geometric loss strategy (Chennupati et al. 2019): the geometric mean of the labelled
  tasks' losses, (prod_k L_k)^(1/m). Its gradient weighs task k by total / (m L_k): a task
  whose loss is already small gets a large weight. Paper's scale: with equal losses the
  update is the mean of the task gradients, 1/m of `sum`'s.

  Args:
    losses: float32 [K] (each floored at 1e-30 inside the logarithm).
    labelled: bool [K]; an unlabelled task takes no part (and gets weight 0).
  Returns:
    (total scalar, 0 with no labelled task; weights d total / d L_k [K]).
  """
  labelled = tf.convert_to_tensor(labelled)
  m = tf.maximum(tf.reduce_sum(tf.cast(labelled, tf.float32)), 1.0)
  floored = tf.maximum(losses, 1e-30)
  total = tf.exp(tf.reduce_sum(tf.where(labelled, tf.math.log(floored), 0.0)) / m)
  total = tf.where(tf.reduce_any(labelled), total, 0.0)
  weights = tf.where(labelled, tf.stop_gradient(total) / (m * floored), 0.0)
  return total, weights


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


def _labelled_softmax(logits, labelled):
  """[K]: softmax of `logits` over the labelled tasks (bool [K]), 0 for the others."""
  return tf.where(labelled, tf.nn.softmax(tf.where(labelled, logits, -1e9)), 0.0)


FAMO_EPSILON = 1e-8  # FAMO's shift of the losses inside its logarithms (its min losses are 0).


def famo_total(losses, logits, labelled):
  """FAMO (Liu et al. 2023): the loss whose gradient is FAMO's update direction.

  total = c sum_k z_k log(L_k + eps) over the labelled tasks, z = softmax of the task logits
  over them, c = 1 / sum_k (z_k / (L_k + eps)) held constant: its gradient is
  sum_k w_k grad L_k with w_k = c z_k / (L_k + eps), weights that sum to 1 (paper's scale: with
  equal logits and losses, the mean of the task gradients, 1/m of `sum`'s). The losses must
  be positive (FAMO's assumption; a loss at or below -eps makes the step non-finite).

  Args:
    losses, logits: float32 [K].
    labelled: bool [K]; an unlabelled task takes no part (weight 0).
  Returns:
    (total scalar, 0 with no labelled task; weights [K]).
  """
  labelled = tf.convert_to_tensor(labelled)
  z = _labelled_softmax(logits, labelled)
  shifted = tf.where(labelled, losses + FAMO_EPSILON, 1.0)
  c = tf.stop_gradient(1.0 / tf.maximum(tf.reduce_sum(z / shifted), 1e-30))
  total = c * tf.reduce_sum(tf.stop_gradient(z) * tf.math.log(shifted))
  return total, tf.stop_gradient(c * z / shifted)


def famo_logit_gradient(logits, losses_before, losses_after, labelled):
  """FAMO's gradient on its task logits after an applied update: J^T delta, J the Jacobian
  of z = softmax(logits) over the labelled tasks, delta_k = log(L_k + eps) - log(L'_k + eps)
  the fall of task k's log loss over the update (L before it, L' after it, on the same batch).
  A descent step on it raises the weight of the tasks whose loss fell least.

  Args:
    logits, losses_before, losses_after: float32 [K].
    labelled: bool [K]; the others get 0 (and take no part in the softmax).
  Returns:
    [K].
  """
  labelled = tf.convert_to_tensor(labelled)
  z = _labelled_softmax(logits, labelled)
  fall = tf.where(labelled, tf.math.log(losses_before + FAMO_EPSILON) -
                  tf.math.log(losses_after + FAMO_EPSILON), 0.0)
  return tf.where(labelled, z * (fall - tf.reduce_sum(z * fall)), 0.0)


# ----------------------------------------------------------------------------------- modules


LOG_EPSILON = 1e-8  # Added to a loss inside a logarithm (stch, db_mtl), as LibMTL's DB-MTL.


def _nonnegative(losses):
  """The losses inside a logarithm, clipped at 0: a loss computed as a difference can come
  out below 0 by rounding (a float32 sequence model's log-normaliser minus its path score:
  down to -3.7e-4 on a confident model), and log(L + eps) is then NaN; a DB-MTL run stopped
  on one at step 2,257 (benchmarks/RESULTS.md). The clipped task takes no gradient from that
  step's logarithm (its loss is 0 to rounding)."""
  return tf.maximum(losses, 0.0)


def log_losses_total(losses, labelled):
  """sum_k log(L_k + LOG_EPSILON) over the labelled tasks, and its weights 1 / (L_k + eps):
  STCH's warm-up objective and DB-MTL's loss-scale balancing (each task's gradient divided by
  its loss)."""
  labelled = tf.convert_to_tensor(labelled)
  losses = _nonnegative(losses)
  return (tf.reduce_sum(tf.where(labelled, tf.math.log(losses + LOG_EPSILON), 0.0)),
          tf.where(labelled, 1.0 / (losses + LOG_EPSILON), 0.0))


def stch_total(losses, nadir, mu, labelled):
  """Smooth Tchebycheff scalarisation (Lin et al. 2024), as its multi-task code applies it to
  normalised log-losses: m mu log sum_k exp(log(L_k / z_k + eps) / mu) over the m labelled
  tasks, z_k the task's nadir loss (its mean loss over the warm-up's last epoch). As mu -> 0
  it is m times the largest normalised log-loss (Tchebycheff); mu smooths the max into a
  log-sum-exp, whose gradient weighs the tasks by a softmax that favours the worst-off.

  Args:
    losses: float32 [K]; nadir: float32 [K] > 0; mu: > 0; labelled: bool [K] (the others take
      no part and get weight 0).
  Returns:
    (total scalar, 0 with no labelled task; weights d total / d L_k
     = m softmax_k / (L_k + eps z_k) [K]).
  """
  labelled = tf.convert_to_tensor(labelled)
  m = tf.reduce_sum(tf.cast(labelled, tf.float32))
  losses = _nonnegative(losses)
  terms = tf.where(labelled, tf.math.log(losses / nadir + LOG_EPSILON) / mu, -1e30)
  any_labelled = tf.reduce_any(labelled)
  total = tf.where(any_labelled, m * mu * tf.reduce_logsumexp(terms), 0.0)
  weights = m * tf.nn.softmax(terms) / (losses + LOG_EPSILON * nadir)
  return total, tf.where(labelled, tf.stop_gradient(weights), 0.0)


class Weighting(tf.Module):
  """Base: fixed weights (1 each for `sum`, the given ones for `static`).

  `needs_task_gradients`: whether the trainer must give `combine_gradients` each task's
  gradient on the shared variables (gradient methods) instead of differentiating `total`.
  """

  needs_task_gradients = False
  needs_layer_norms = False  # GradNorm: the trainer gives after_step |grad_W L_k| [K].
  needs_losses_after_update = False  # FAMO: after_step gets the losses after the update.
  # DB-MTL, MoCo, ExcessMTL: state per shared parameter, [K, P] (mtlcore.choices
  # .PER_PARAMETER_STATE); the trainer calls build(P) once, P the size
  # of the model's shared trained variables, and gives combine_gradients rows over all of
  # them (zero columns for those no task reaches in the step).
  needs_gradient_state = False
  # SDMGrad, MoDo: independent samples of the task gradients per step. With samples S > 1
  # the joint trainer splits each batch into S strided parts along its leading axis, runs a
  # forward pass on each and gives combine_gradients S K rows, part after part ([S K, P]).
  samples = 1
  # Whether `total` is linear in the losses, d total / d L_k not depending on L (under a
  # tf.distribute strategy each replica can then weigh its own share of each loss).
  linear_in_losses = True

  def __init__(self, tasks, weights=None, name=None):
    super().__init__(name=name)
    self.task_names = tuple(tasks)
    weights = [1.0] * len(self.task_names) if weights is None else list(weights)
    self.fixed_weights = tf.constant(weights, tf.float32)

  def total(self, losses, labelled, seed=None):
    """(total loss to differentiate, weights [K]) for losses [K], labelled bool [K]; `seed`
    int64 [2], the step's (for methods that draw)."""
    del labelled, seed
    return tf.reduce_sum(self.fixed_weights * losses), self.fixed_weights

  def combine_gradients(self, grads, seed, labelled):
    """Gradient methods: [K, P] -> ([P], weights [K]); `seed` int64 [2] for random orders;
    `labelled` bool [K]: the tasks with a label in the batch (the others' rows are zero and
    take no part)."""
    raise NotImplementedError

  def task_losses(self, losses, labelled):
    """Gradient methods: the K losses [K] whose gradients `combine_gradients` combines (the
    task losses themselves unless the method rescales them first, as `imtl`). Elementwise:
    entry k depends on the losses through L_k only (the joint trainer differentiates each
    entry through its own task's loss alone)."""
    del labelled
    return losses

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
    """Updates the method's running state after an applied step (DWA's averages, GradNorm's
    weights, FAMO's logits); fixed weights keep none. `losses_after` [K]: the same batch's
    losses after the update (given only when `needs_losses_after_update`)."""
    del losses, labelled, layer_norms, losses_after

  def staged_values(self):
    """The new state values the last `combine_gradients` staged for `after_step` (a list of
    tensors; none for a method without staged state): a caller that runs the aggregation in
    a function of its own returns them from it and hands them back to `restage`."""
    return []

  def restage(self, values):
    """Stages `values` (as `staged_values` listed them, computed outside the function that
    staged them) for `after_step` in place of the staged ones."""
    del values

  def task_variables(self):
    """{task: its own trained variables}: a step where the task has no label leaves them
    and their optimizer slots unchanged, as it leaves the task's head."""
    return {}

  def task_rows(self):
    """[its trained variables of shape [K, ...] whose row k is task k's own]: a step where
    task k has no label leaves row k and its optimizer slots' row k unchanged. One variable
    for K tasks' scalars, where `task_variables` would take K: at 16 synthetic tasks the step
    of `uncertainty` was 1.22x `sum`'s with 16 scalar variables and their Adam slots, 1.04x
    with one [16] variable (`imtl_l` 1.17x -> 1.03x; AMD EPYC, one process, 8 interleaved
    rounds of 200 steps)."""
    return []

  def build(self, columns):
    """Makes the per-parameter state of a method with `needs_gradient_state` (`columns`: P,
    the number of shared parameters); the others have none."""
    del columns


class Uncertainty(Weighting):
  """Learned log-variances s_k (start 0: weight 1), trained with the model's optimizer."""

  def __init__(self, tasks, name=None):
    super().__init__(tasks, name=name)
    # Row k is task k's (task_rows): a task with no label leaves its own untouched.
    self.log_variances = tf.Variable(tf.zeros([len(self.task_names)]), name="log_variances")

  def total(self, losses, labelled, seed=None):
    return uncertainty_total(losses, self.log_variances, labelled)

  def task_rows(self):
    return [self.log_variances]


class GeometricLossStrategy(Weighting):
  """GLS: the geometric mean of the task losses (`gls_total`); no state."""

  linear_in_losses = False

  def total(self, losses, labelled, seed=None):
    return gls_total(losses, labelled)


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

  def total(self, losses, labelled, seed=None):
    weights = self.current_weights()
    return tf.reduce_sum(weights * losses), weights

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
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

  def total(self, losses, labelled, seed=None):
    weights = tf.identity(self.weights)
    return tf.reduce_sum(weights * losses), weights

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
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


class FAMO(Weighting):
  """FAMO (Liu et al. 2023): loss weights z = softmax(logits) over the labelled tasks, the
  update the gradient of `famo_total`; after each applied update a second forward pass on the
  same batch (same dropout masks) gives the losses after it, and the logits take one Adam
  step (the authors' torch Adam: betas 0.9, 0.999, eps 1e-8, L2 weight decay `gamma`) on
  `famo_logit_gradient`.

  Cost: one backward pass as `sum`, plus one forward pass per applied step. State (in the
  checkpoint): the logits and their Adam moments and step counts, [K] each. A task with no
  label in the batch keeps all of its entries bitwise (its Adam count counts its own updates:
  with every task labelled, the paper's single count). The authors' code also clips the
  shared gradient's norm at 1 (its max_norm); here clipping is --clip_norm's, for every method.
  """

  needs_losses_after_update = True
  linear_in_losses = False

  def __init__(self, tasks, *, learning_rate=0.025, gamma=0.01, name=None):
    super().__init__(tasks, name=name)
    self.learning_rate, self.gamma = float(learning_rate), float(gamma)
    k = len(self.task_names)
    self.logits = tf.Variable(tf.zeros([k]), trainable=False, name="logits")
    self.first_moments = tf.Variable(tf.zeros([k]), trainable=False, name="logit_first_moments")
    self.second_moments = tf.Variable(tf.zeros([k]), trainable=False,
                                      name="logit_second_moments")
    self.updates = tf.Variable(tf.zeros([k]), trainable=False, name="logit_updates")

  def total(self, losses, labelled, seed=None):
    return famo_total(losses, self.logits, labelled)

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
    if losses_after is None:
      raise ValueError("FAMO's after_step needs the losses after the update (losses_after).")
    gradient = famo_logit_gradient(self.logits, losses, losses_after, labelled)
    gradient += self.gamma * self.logits  # torch Adam's weight_decay: L2 on the logits.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    m = beta1 * self.first_moments + (1 - beta1) * gradient
    v = beta2 * self.second_moments + (1 - beta2) * tf.square(gradient)
    t = self.updates + 1.0
    step = self.learning_rate * (m / (1 - beta1**t)) / (tf.sqrt(v / (1 - beta2**t)) + eps)
    for variable, value in ((self.logits, self.logits - step), (self.first_moments, m),
                            (self.second_moments, v), (self.updates, t)):
      variable.assign(tf.where(labelled, value, variable))


# Stateless draws, always computed by XLA: the same numbers inside the compiled step, outside
# it and across replicas under a strategy (TensorFlow's own kernels draw other numbers from
# the same seed). Traced once per shape. Philox named: XLA's choice for "auto_select" took
# 4.2 ms on CPU for GradDrop's 25,856 uniforms, Philox 0.17 ms (AMD EPYC, TF 2.21).
_uniform = tf.function(
    lambda shape, seed: tf.random.stateless_uniform(shape, seed=seed, alg="philox"),
    jit_compile=True, autograph=False)
_normal = tf.function(
    lambda shape, seed: tf.random.stateless_normal(shape, seed=seed, alg="philox"),
    jit_compile=True, autograph=False)


def _random_orders(k, seed):
  """int32 [K, K - 1]: for each task the other tasks in a fresh random order (from `seed`);
  with two tasks the one order."""
  others = tf.constant([[j for j in range(k) if j != i] for i in range(k)], tf.int32)
  if k <= 2:
    return others
  keys = _uniform((k, k - 1), seed)
  return tf.gather(others, tf.argsort(keys, axis=1), batch_dims=1)


class PCGrad(Weighting):
  needs_task_gradients = True

  def combine_gradients(self, grads, seed, labelled):
    # An unlabelled task's zero row neither projects another row nor is changed: no mask.
    del labelled
    k = len(self.task_names)
    return pcgrad(grads, _random_orders(k, seed)), tf.ones([k])


def _assign_all(pairs):
  for variable, value in pairs:
    variable.assign(value)


class StagedState(Weighting):
  """A gradient method whose state (its variables) moves only with an applied update:
  `combine_gradients` stages each variable's new value (`_stage`; they wait in its trace),
  `after_step` assigns them. A method whose state has a column per shared parameter makes it
  in `build` (`_per_parameter`)."""

  needs_task_gradients = True
  _staged_update = None

  def _stage(self, *pairs):
    """(variable, new value) pairs for `after_step`. Kept in a function: tf.Module would
    track a tuple of variables as one more checkpoint dependency."""
    self._staged_update = functools.partial(_assign_all, pairs)

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
    if self._staged_update is not None:
      self._staged_update()

  def _staged_pairs(self):
    return [] if self._staged_update is None else list(self._staged_update.args[0])

  def staged_values(self):
    return [value for _, value in self._staged_pairs()]

  def restage(self, values):
    pairs = self._staged_pairs()
    if len(values) != len(pairs):
      raise ValueError(f"restage: {len(values)} values for {len(pairs)} staged variables.")
    self._stage(*[(variable, value) for (variable, _), value in zip(pairs, values)])

  def _per_parameter(self, columns, name):
    """A [K, columns] float32 state variable, zeros."""
    return tf.Variable(tf.zeros([len(self.task_names), columns]), trainable=False, name=name)

  def _require(self, variable):
    """`variable` (made by `build`), or ValueError if `build` has not run."""
    if variable is None:
      raise ValueError(f"{type(self).__name__}.build(columns) must run before its first "
                       f"step.")
    return variable


class GradVac(StagedState):
  """GradVac's targets phi^ [K, K] (start 0) are state: kept in the checkpoint, moved only by
  an applied step (`StagedState`)."""

  def __init__(self, tasks, *, beta=0.01, name=None):
    super().__init__(tasks, name=name)
    if not 0.0 <= beta <= 1.0:
      raise ConfigError(f"--weighting_options: gradvac beta must be in [0, 1], got {beta!r}.")
    self.beta = float(beta)
    k = len(self.task_names)
    self.targets = tf.Variable(tf.zeros([k, k]), trainable=False, name="cosine_targets")

  def combine_gradients(self, grads, seed, labelled):
    del labelled  # A zero row alters nothing and keeps its targets.
    k = len(self.task_names)
    direction, targets = gradvac(grads, _random_orders(k, seed), self.targets, self.beta)
    self._stage((self.targets, targets))
    return direction, tf.ones([k])


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


class GramMethod(Weighting):
  """A gradient method that is a function of the task gradients alone (`upgrad`, `dualproj`,
  `mgda`, `imtl_g`, `nash_mtl`, `fairgrad`, `aligned_mtl`, `config`), with its hyper-parameters
  bound."""

  needs_task_gradients = True

  def __init__(self, tasks, function, name, **options):
    super().__init__(tasks, name=name)
    self._function, self.options = function, dict(options)

  def combine_gradients(self, grads, seed, labelled):
    del seed
    return self._function(grads, labelled=labelled, **self.options)


class RandomLossWeighting(Weighting):
  """RLW (Lin et al. 2022): each step's loss weights are drawn afresh, softmax of K standard
  normal numbers (from the step's seed: the same run draws the same weights), over the
  labelled tasks, times their number m so that they sum to m as `sum`'s do."""

  def total(self, losses, labelled, seed=None):
    k = len(self.task_names)
    seed = tf.constant([0, 0], tf.int64) if seed is None else seed
    draws = _normal((k,), seed)
    labelled = tf.convert_to_tensor(labelled)
    m = tf.reduce_sum(tf.cast(labelled, tf.float32))
    weights = m * _labelled_softmax(draws, labelled)
    return tf.reduce_sum(weights * losses), weights


class ImpartialLossScaling(Weighting):
  """IMTL-L (Liu et al. 2021): learned scales s_k (start 0), total sum_k [e^{s_k} L_k - s_k]
  over labelled tasks: at the optimum of s_k every scaled loss e^{s_k} L_k is 1, so no task
  dominates by its loss's size. Trained with the model's optimizer."""

  def __init__(self, tasks, name=None):
    super().__init__(tasks, name=name)
    # Row k is task k's (task_rows).
    self.log_scales = tf.Variable(tf.zeros([len(self.task_names)]), name="log_scales")

  def task_losses(self, losses, labelled):
    """[K]: e^{s_k} L_k - s_k for labelled tasks, 0 for the others."""
    scales = tf.convert_to_tensor(self.log_scales)
    return tf.where(labelled, tf.exp(scales) * losses - scales, 0.0)

  def total(self, losses, labelled, seed=None):
    return (tf.reduce_sum(self.task_losses(losses, labelled)), tf.exp(self.log_scales))

  def task_rows(self):
    return [self.log_scales]


class ImpartialMTL(ImpartialLossScaling):
  """IMTL (Liu et al. 2021), the hybrid: IMTL-L's learned scales on the losses (each task's
  scaled loss e^{s_k} L_k - s_k), then IMTL-G's combination of the scaled losses' gradients on
  the shared variables. Each head and each s_k get their own scaled loss's gradient.
  Reports per task IMTL-G's weight times e^{s_k}: the weight on the raw loss's gradient."""

  needs_task_gradients = True

  def __init__(self, tasks, *, ridge=gradient_methods.RIDGE, name=None):
    super().__init__(tasks, name=name)
    self.ridge = float(ridge)

  def total(self, losses, labelled, seed=None):
    # Only logged: a gradient method's update is combine_gradients' of task_losses.
    return Weighting.total(self, losses, labelled, seed)

  def combine_gradients(self, grads, seed, labelled):
    del seed
    direction, a = imtl_g(grads, ridge=self.ridge, labelled=labelled)
    return direction, a * tf.exp(self.log_scales)


class GradDrop(Weighting):
  """GradDrop (`graddrop`): each step draws its uniforms afresh from the step's seed."""

  needs_task_gradients = True

  def __init__(self, tasks, *, leak=0.0, name=None):
    super().__init__(tasks, name=name)
    self.leak = float(leak)

  def combine_gradients(self, grads, seed, labelled):
    columns = grads.shape[1] if grads.shape[1] is not None else tf.shape(grads)[1]
    return graddrop(grads, _uniform(tf.stack([columns]), seed), self.leak, labelled)


class DualBalancing(StagedState):
  """DB-MTL (Lin & Zhang 2023): loss-scale balancing (each task differentiates log L_k, so
  its gradient is divided by its loss; heads too) and gradient-magnitude balancing
  (`db_mtl`: moving averages of the log-losses' gradients on the shared variables, each scaled
  to the largest's norm). The averages are state, [K, P] float32 (P shared parameters: the
  checkpoint grows by 4 K P bytes), moved only by an applied step, with the count of applied
  steps that sets the rate beta / t^beta_sigma (LibMTL's defaults: beta 0.9, sigma 0).
  Reports per task the scale its average got."""

  needs_gradient_state = True

  def __init__(self, tasks, *, beta=0.9, beta_sigma=0.0, name=None):
    super().__init__(tasks, name=name)
    self.beta, self.beta_sigma = float(beta), float(beta_sigma)
    self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="applied_steps")
    self.averages = None

  def build(self, columns):
    self.averages = self._per_parameter(columns, "gradient_averages")

  def task_losses(self, losses, labelled):
    return tf.where(labelled, tf.math.log(_nonnegative(losses) + LOG_EPSILON), 0.0)

  def total(self, losses, labelled, seed=None):
    # Only logged: a gradient method's update is combine_gradients' of task_losses.
    return log_losses_total(losses, labelled)

  def combine_gradients(self, grads, seed, labelled):
    del seed
    averages = self._require(self.averages)
    step = self.steps + 1
    rate = self.beta / tf.cast(step, tf.float32) ** self.beta_sigma
    direction, weights, moved = db_mtl(grads, averages, rate, labelled)
    self._stage((averages, moved), (self.steps, step))
    return direction, weights


class MoCo(StagedState):
  """MoCo (Fernando et al. 2023): tracked gradients y [K, P] (start 0) and simplex weights
  lambda [K] (start 1/K) as state, moved only by an applied step, with the count of applied
  steps t that sets the rates beta / t^beta_sigma and gamma / t^gamma_sigma (LibMTL's
  defaults: beta 0.5, gamma 0.1, both sigmas 0.5, rho 0). The checkpoint grows by 4 K P
  bytes."""

  needs_gradient_state = True

  def __init__(self, tasks, *, beta=0.5, beta_sigma=0.5, gamma=0.1, gamma_sigma=0.5, rho=0.0,
               name=None):
    super().__init__(tasks, name=name)
    self.beta, self.beta_sigma = float(beta), float(beta_sigma)
    self.gamma, self.gamma_sigma, self.rho = float(gamma), float(gamma_sigma), float(rho)
    k = len(self.task_names)
    self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="applied_steps")
    self.simplex_weights = tf.Variable(tf.fill([k], 1.0 / k), trainable=False,
                                       name="simplex_weights")
    self.tracked = None

  def build(self, columns):
    self.tracked = self._per_parameter(columns, "tracked_gradients")

  def combine_gradients(self, grads, seed, labelled):
    del seed
    tracked = self._require(self.tracked)
    step = self.steps + 1
    t = tf.cast(step, tf.float32)
    direction, weights, moved, simplex = moco(
        grads, tracked, self.simplex_weights, self.beta / t ** self.beta_sigma,
        self.gamma / t ** self.gamma_sigma, self.rho, labelled)
    self._stage((tracked, moved), (self.simplex_weights, simplex), (self.steps, step))
    return direction, weights


class ExcessRisk(StagedState):
  """ExcessMTL (He et al. 2024): per task, its accumulated squared gradients [P] (AdaGrad's
  diagonal), its first excess-risk estimate and its loss weight (start 1) as state, moved only
  by an applied step (`excess_mtl`); robust_step_size 0.01 (LibMTL's default). The checkpoint
  grows by 4 K P bytes. The shared variables take the weighted sum of the task gradients; each
  task-owned variable (a head) its own task's gradient, as with every gradient method here."""

  needs_gradient_state = True

  def __init__(self, tasks, *, robust_step_size=0.01, name=None):
    super().__init__(tasks, name=name)
    self.step_size = float(robust_step_size)
    k = len(self.task_names)
    self.initial = tf.Variable(tf.zeros([k]), trainable=False, name="initial_excess")
    self.seen = tf.Variable(tf.zeros([k], tf.bool), trainable=False, name="seen")
    self.loss_weights = tf.Variable(tf.ones([k]), trainable=False, name="loss_weights")
    self.squares = None

  def build(self, columns):
    self.squares = self._per_parameter(columns, "squared_gradient_sums")

  def combine_gradients(self, grads, seed, labelled):
    del seed
    state = (self._require(self.squares), self.initial, self.seen, self.loss_weights)
    direction, weights, *new = excess_mtl(grads, *state, self.step_size, labelled)
    self._stage(*zip(state, new))
    return direction, weights


class SampledSimplex(StagedState):
  """A gradient method over S = 3 independent samples of the task gradients (the rows
  [3 K, P], sample after sample) whose state is simplex weights [K] (start 1/K), moved only by
  an applied step: SDMGrad and MoDo. Each sample is a third of the batch; the direction is
  taken on the third, and each task-owned variable (a head) gets its own task's gradient on
  the whole batch."""

  samples = 3

  def __init__(self, tasks, name=None):
    super().__init__(tasks, name=name)
    k = len(self.task_names)
    self.simplex_weights = tf.Variable(tf.fill([k], 1.0 / k), trainable=False,
                                       name="simplex_weights")

  def combine_gradients(self, grads, seed, labelled):
    del seed
    samples = tf.reshape(grads, [self.samples, len(self.task_names), -1])
    direction, weights, new = self._step(samples, labelled)
    self._stage((self.simplex_weights, new))
    return direction, weights

  def _step(self, samples, labelled):
    raise NotImplementedError


class SDMGrad(SampledSimplex):
  """SDMGrad (Xiao et al. 2023; `sdmgrad`): lamda 0.3, 20 iterations (LibMTL's defaults)."""

  def __init__(self, tasks, *, lamda=0.3, iterations=20, name=None):
    super().__init__(tasks, name=name)
    if not lamda >= 0:
      raise ConfigError(f"--weighting_options: sdmgrad lamda must be >= 0, got {lamda!r}.")
    self.lamda, self.iterations = float(lamda), int(iterations)

  def _step(self, samples, labelled):
    return sdmgrad(samples, self.simplex_weights, self.lamda, self.iterations, labelled)


class MoDo(SampledSimplex):
  """MoDo (Chen et al. 2023; `modo`): gamma 0.001, rho 0.1 (LibMTL's defaults)."""

  def __init__(self, tasks, *, gamma=0.001, rho=0.1, name=None):
    super().__init__(tasks, name=name)
    self.gamma, self.rho = float(gamma), float(rho)

  def _step(self, samples, labelled):
    return modo(samples, self.simplex_weights, self.gamma, self.rho, labelled)


class SmoothTchebycheff(Weighting):
  """STCH (Lin et al. 2024), as its multi-task code: for `warmup_epochs` epochs (of `period`
  steps) the objective is the sum of the log-losses (`log_losses_total`), and each task's
  mean loss over the warm-up's last epoch (over the steps where it had a label) becomes its
  nadir z_k; then `stch_total`. With no warm-up z_k = 1. The step count and the loss sums are
  state (in the checkpoint), moved only by an applied step."""

  linear_in_losses = False

  def __init__(self, tasks, *, mu=1.0, warmup_epochs=4, period=1, name=None):
    super().__init__(tasks, name=name)
    self.mu = float(mu)
    self.warmup_steps = int(warmup_epochs) * int(period)
    self.last_epoch_start = max(int(warmup_epochs) - 1, 0) * int(period)
    k = len(self.task_names)
    self.steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="applied_steps")
    self.loss_sums = tf.Variable(tf.zeros([k]), trainable=False, name="warmup_loss_sums")
    self.loss_counts = tf.Variable(tf.zeros([k]), trainable=False, name="warmup_loss_counts")

  def nadir(self):
    """[K]: each task's mean warm-up loss (1 where it had none)."""
    return tf.where(self.loss_counts > 0,
                    self.loss_sums / tf.maximum(self.loss_counts, 1.0), 1.0)

  def total(self, losses, labelled, seed=None):
    warm_total, warm_weights = log_losses_total(losses, labelled)
    total, weights = stch_total(losses, self.nadir(), self.mu, labelled)
    warming = self.steps < self.warmup_steps
    return tf.where(warming, warm_total, total), tf.where(warming, warm_weights, weights)

  def after_step(self, losses, labelled, layer_norms=None, losses_after=None):
    counted = (labelled & (self.steps >= self.last_epoch_start)
               & (self.steps < self.warmup_steps))
    self.loss_sums.assign_add(tf.where(counted, losses, 0.0))
    self.loss_counts.assign_add(tf.cast(counted, tf.float32))
    self.steps.assign_add(1)


_GRAM_METHODS = {"upgrad": upgrad, "dualproj": dualproj, "mgda": mgda, "imtl_g": imtl_g,
                 "nash_mtl": nash_mtl, "fairgrad": fairgrad, "aligned_mtl": aligned_mtl,
                 "config": config}


def make_weighting(method, tasks, *, weights=None, period=None, options=None):
  """The Weighting for `method` (one of METHODS) over `tasks` (names, in order).

  weights: `static`'s per-task weights; period: `dwa`'s period and `stch`'s epoch in steps
  (the trainer's steps per epoch); options: the
  method's hyper-parameters (mtlcore.choices.WEIGHTING_OPTIONS), its papers' defaults
  where not given.
  """
  if method not in METHODS:
    raise ConfigError(f"--weighting must be one of {list(METHODS)}, got {method!r}.")
  if weights is not None and method not in ("sum", "static"):
    raise ConfigError(f"--task_weights are static loss weights; they do not combine with "
                      f"--weighting={method}.")
  try:
    options = choices.weighting_options(method, [f"{k}={v}" for k, v in (options or {}).items()])
  except ValueError as e:
    raise ConfigError(str(e)) from None
  if method in ("sum", "static"):
    return Weighting(tasks, weights, name="sum" if weights is None else "static")
  if method == "uncertainty":
    return Uncertainty(tasks, name=method)
  if method == "imtl_l":
    return ImpartialLossScaling(tasks, name=method)
  if method == "rlw":
    return RandomLossWeighting(tasks, name=method)
  if method == "gls":
    return GeometricLossStrategy(tasks, name=method)
  if method == "famo":
    return FAMO(tasks, name=method, **options)
  if method == "dwa":
    return DynamicWeightAverage(tasks, period=period or 1, name=method, **options)
  if method == "gradnorm":
    return GradNorm(tasks, name=method, **options)
  if method == "pcgrad":
    return PCGrad(tasks, name=method)
  if method == "gradvac":
    return GradVac(tasks, name=method, **options)
  if method == "cagrad":
    return CAGrad(tasks, name=method, **options)
  if method == "imtl":
    return ImpartialMTL(tasks, name=method, **options)
  if method == "graddrop":
    return GradDrop(tasks, name=method, **options)
  if method == "db_mtl":
    return DualBalancing(tasks, name=method, **options)
  if method == "moco":
    return MoCo(tasks, name=method, **options)
  if method == "excess_mtl":
    return ExcessRisk(tasks, name=method, **options)
  if method == "sdmgrad":
    return SDMGrad(tasks, name=method, **options)
  if method == "modo":
    return MoDo(tasks, name=method, **options)
  if method == "stch":
    return SmoothTchebycheff(tasks, period=period or 1, name=method, **options)
  return GramMethod(tasks, _GRAM_METHODS[method], method, **options)
