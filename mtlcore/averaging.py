"""WeightAverage: an exponential moving average of variables (Polyak averaging), for evaluation.

Training moves the weights with the noise of each batch; evaluating their running average
instead usually scores better and is steadier from one evaluation to the next. The averages
are variables of this module, so a checkpoint of whoever owns it (the trainer) holds them and
a resumed run continues them exactly.
"""

import contextlib

import tensorflow as tf

from mtlcore.errors import ConfigError


class _Held:
  """A plain holder, invisible to tf.Module and to checkpoints."""

  def __init__(self, variables):
    self.variables = variables


class WeightAverage(tf.Module):
  """Keeps avg <- d * avg + (1 - d) * var for a fixed list of variables.

  d = min(decay, (1 + n) / (10 + n)) at the n-th update (counting from 0), so the first
  averages are not dominated by the initial weights.
  """

  def __init__(self, variables, *, decay=0.999, name=None):
    """Args:
      variables: the variables to average (e.g. a model's trainable variables).
      decay: the long-run decay in (0, 1); the average spans about 1 / (1 - decay) updates.
    """
    super().__init__(name=name)
    if not 0.0 < decay < 1.0:
      raise ConfigError(f"Weight-average decay must be in (0, 1), got {decay!r}.")
    self.decay = float(decay)
    # Held, not tracked: a checkpoint saves each variable once, through its owner (a Keras
    # layer's tf.Variable would otherwise be saved a second time here).
    self._held = _Held(list(variables))
    self.averages = [tf.Variable(v.read_value(), trainable=False, name=f"average/{i}")
                     for i, v in enumerate(self._held.variables)]
    self.updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="updates")

  def update(self):
    """Moves every average one step towards its variable's current value."""
    n = tf.cast(self.updates, tf.float32)
    d = tf.minimum(self.decay, (1.0 + n) / (10.0 + n))
    for average, var in zip(self.averages, self._held.variables):
      average.assign(d * average + (1.0 - d) * var)
    self.updates.assign_add(1)

  @contextlib.contextmanager
  def swapped_in(self):
    """Within the block the variables hold their averages; afterwards their own values again.

    Eager only (evaluation and checkpointing between compiled training loops).
    """
    saved = [tf.identity(v.read_value()) for v in self._held.variables]
    for var, average in zip(self._held.variables, self.averages):
      var.assign(average)
    try:
      yield
    finally:
      for var, value in zip(self._held.variables, saved):
        var.assign(value)
