"""TaskSampler: decides which task the next alternating step trains.

Its randomness lives in a `tf.random.Generator`, a variable: a checkpoint of the sampler
restores the exact sequence of tasks still to come.
"""

import numpy as np
import tensorflow as tf

from mtlcore.errors import ConfigError


class TaskSampler(tf.Module):
  """Draws task indices i with probability `probabilities[i]`, from a seeded generator.

  `sample()` returns an int32 scalar tensor, inside or outside a tf.function.
  """

  def __init__(self, task_names, probabilities=None, *, seed, name=None):
    """Args:
      task_names: the tasks, in the order indices refer to.
      probabilities: one non-negative weight per task (normalised here); default uniform.
      seed: int seed of the generator.
      name: module name.
    """
    super().__init__(name=name)
    self.task_names = tuple(task_names)
    if not self.task_names:
      raise ConfigError("A TaskSampler needs at least one task.")
    if probabilities is None:
      probabilities = [1.0] * len(self.task_names)
    probabilities = np.asarray(probabilities, np.float64)
    if (probabilities.shape != (len(self.task_names),) or (probabilities < 0).any()
        or not probabilities.sum() > 0 or not np.isfinite(probabilities).all()):
      raise ConfigError(
          f"Task probabilities must be {len(self.task_names)} non-negative numbers with a "
          f"positive sum, one per task {list(self.task_names)}; got {probabilities.tolist()}.")
    self.probabilities = probabilities / probabilities.sum()
    self._cumulative = tf.constant(np.cumsum(self.probabilities)[:-1], tf.float32)
    self.generator = tf.random.Generator.from_seed(seed)

  def sample(self):
    u = self.generator.uniform([], dtype=tf.float32)
    return tf.cast(tf.reduce_sum(tf.cast(u >= self._cumulative, tf.int32)), tf.int32)
