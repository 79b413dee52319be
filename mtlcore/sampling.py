"""Task samplers: which task the next alternating step trains.

With n_i the size of task i's training corpus (batches in one pass over it), N tasks, and f
the progress of training (global step / (total steps - 1), clipped to [0, 1]):

  uniform       p_i = 1 / N
  proportional  p_i = n_i / sum_j n_j
  temperature   p_i = n_i^(1/T) / sum_j n_j^(1/T)          (T = 1: proportional; large T:
                                                             towards uniform)
  annealed      p_i = n_i^a(f) / sum_j n_j^a(f),  a(f) = 1 - (1 - a_end) f
                (Stickland & Murray 2019: a falls from 1, proportional, to a_end = 0.2 over
                training, so small tasks catch up at the end)
  weighted      p_i = w_i / sum_j w_j                        (fixed weights, e.g. --task_weights)
  round_robin   task (step mod N), no randomness

All but round-robin are one formula, p = softmax(a(step) * log s), over sizes s (weights for
"weighted"): `probabilities` is that pure function. `TaskSampler` is the thin stateful part: its
randomness lives in a `tf.random.Generator` (a variable, so a checkpoint holds it) and every
draw is a function of that state and the global step, so a resumed run replays exactly the
sequence still to come.
"""

import numpy as np
import tensorflow as tf

from mtlcore.choices import SAMPLERS as KINDS
from mtlcore.errors import ConfigError


def exponent(kind, progress, *, temperature=1.0, final_exponent=0.2):
  """The exponent a applied to log sizes at training progress f in [0, 1] (float or tensor)."""
  if kind == "uniform":
    return 0.0
  if kind in ("proportional", "weighted"):
    return 1.0
  if kind == "temperature":
    return 1.0 / temperature
  if kind == "annealed":
    return 1.0 - (1.0 - final_exponent) * progress
  raise ConfigError(f"exponent() does not apply to sampler {kind!r}.")


def probabilities(log_sizes, a):
  """softmax(a * log_sizes) over the last axis: p_i proportional to size_i^a.

  Args:
    log_sizes: float32 [N], log of the sizes (-inf for a weight of 0, which gets p = 0).
    a: the exponent, a scalar or float32 [S] (one row of probabilities per value).
  Returns:
    float32 [N], or [S, N].
  """
  a = tf.cast(a, tf.float32)[..., None]
  logits = tf.where(tf.math.is_inf(log_sizes), -np.inf, a * log_sizes)
  return tf.nn.softmax(logits)


class TaskSampler(tf.Module):
  """Draws task indices for alternating training.

  `sample(step)` returns an int32 scalar tensor, inside or outside a tf.function; `step` is
  the trainer's global step (an int64 scalar).
  """

  def __init__(self, task_names, weights=None, *, kind=None, sizes=None, temperature=2.0,
               total_steps=None, final_exponent=0.2, seed, name=None):
    """Args:
      task_names: the tasks, in the order indices refer to.
      weights: fixed non-negative weights, one per task (kind "weighted"; normalised here).
      kind: one of KINDS; default "weighted" if weights are given, else "uniform".
      sizes: positive corpus sizes, one per task (proportional, temperature, annealed).
      temperature: T of the temperature sampler (> 0).
      total_steps: training length; the annealed sampler's progress is step / (total - 1).
      final_exponent: the annealed sampler's exponent at the end of training, in [0, 1].
      seed: int seed of the generator.
      name: module name.
    """
    super().__init__(name=name)
    self.task_names = tuple(task_names)
    n = len(self.task_names)
    if not n:
      raise ConfigError("A TaskSampler needs at least one task.")
    self.kind = kind or ("weighted" if weights is not None else "uniform")
    if self.kind not in KINDS:
      raise ConfigError(f"--sampler must be one of {list(KINDS)}, got {self.kind!r}.")
    if self.kind == "weighted":
      values = np.asarray([1.0] * n if weights is None else weights, np.float64)
      if (values.shape != (n,) or not np.isfinite(values).all() or (values < 0).any()
          or not values.sum() > 0):
        raise ConfigError(
            f"Task probabilities must be {n} non-negative numbers with a positive sum, one per "
            f"task {list(self.task_names)}; got {values.tolist()}.")
    elif weights is not None:
      raise ConfigError(f"Task weights go with the weighted sampler, not --sampler={self.kind}.")
    else:
      values = np.asarray([1.0] * n if sizes is None else sizes, np.float64)
      if self.kind in ("proportional", "temperature", "annealed") and (
          sizes is None or values.shape != (n,) or not (values > 0).all()):
        raise ConfigError(f"--sampler={self.kind} needs a positive size for each task "
                          f"{list(self.task_names)}; got {sizes}.")
    if not temperature > 0:
      raise ConfigError(f"--sampler_temperature must be positive, got {temperature!r}.")
    if not 0.0 <= final_exponent <= 1.0:
      raise ConfigError(f"final_exponent must be in [0, 1], got {final_exponent!r}.")
    if self.kind == "annealed" and not (total_steps and total_steps > 0):
      raise ConfigError("--sampler=annealed needs the training length (total_steps).")
    self.temperature, self.final_exponent = float(temperature), float(final_exponent)
    self.total_steps = int(total_steps or 1)
    with np.errstate(divide="ignore"):
      self._log_sizes = tf.constant(np.log(values), tf.float32)
    self.generator = tf.random.Generator.from_seed(seed)

  def progress(self, step):
    """Training progress f in [0, 1] at global step `step`."""
    return tf.clip_by_value(tf.cast(step, tf.float32) / max(self.total_steps - 1, 1), 0.0, 1.0)

  def probabilities(self, step):
    """p [N] (float32) at global step `step`; round-robin: the one-hot of its task."""
    if self.kind == "round_robin":
      return tf.one_hot(tf.cast(step % len(self.task_names), tf.int32), len(self.task_names))
    a = exponent(self.kind, self.progress(step), temperature=self.temperature,
                 final_exponent=self.final_exponent)
    return probabilities(self._log_sizes, a)

  def expected_share(self):
    """Each task's expected fraction of the total_steps steps (numpy [N]): what the per-task
    learning-rate schedules span."""
    steps = tf.range(self.total_steps, dtype=tf.int64)
    if self.kind == "round_robin":
      rows = tf.one_hot(tf.cast(steps % len(self.task_names), tf.int32), len(self.task_names))
    else:
      rows = probabilities(self._log_sizes, exponent(
          self.kind, self.progress(steps), temperature=self.temperature,
          final_exponent=self.final_exponent) + tf.zeros([self.total_steps]))
    return tf.reduce_mean(rows, axis=0).numpy().astype(np.float64)

  def sample(self, step):
    """The index of the task to train at global step `step`."""
    if self.kind == "round_robin":
      return tf.cast(step % len(self.task_names), tf.int32)
    u = self.generator.uniform([], dtype=tf.float32)
    cumulative = tf.cumsum(self.probabilities(step))[:-1]
    return tf.reduce_sum(tf.cast(u >= cumulative, tf.int32))
