"""Learning-rate schedules: pure functions from an optimizer's update count to a multiplier.

A schedule scales the optimizer's base learning rate; it holds no state of its own (the count
it reads is the optimizer's checkpointed `iterations`), so a resumed run continues the schedule
exactly where it stopped.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive


class LinearDecay:
  """Multiplier 1 for the first `decay_start` of `total_steps` updates, then a straight line
  down to `final` at update `total_steps`, and `final` after that.

  Example: total_steps=1000, decay_start=0.5, final=0.0 keeps the base rate for 500 updates
  and reaches 0.002 x base at update 999.
  """

  def __init__(self, total_steps, *, decay_start=0.5, final=0.0):
    """Args:
      total_steps: the number of updates the schedule spans (positive int).
      decay_start: fraction of `total_steps` after which the decay begins, in [0, 1].
        1 means no decay at all.
      final: the multiplier reached at `total_steps`, in [0, 1].
    """
    require_positive("total_steps", total_steps)
    if not 0.0 <= decay_start <= 1.0:
      raise ConfigError(f"decay_start must be in [0, 1], got {decay_start!r}.")
    if not 0.0 <= final <= 1.0:
      raise ConfigError(f"final must be in [0, 1], got {final!r}.")
    self.total_steps = int(total_steps)
    self.decay_start = float(decay_start)
    self.final = float(final)

  def __call__(self, step):
    """The multiplier (float32 scalar) for update number `step` (counting from 0)."""
    begin = self.decay_start * self.total_steps
    span = max(self.total_steps - begin, 1.0)
    progress = tf.clip_by_value((tf.cast(step, tf.float32) - begin) / span, 0.0, 1.0)
    return 1.0 - (1.0 - self.final) * progress

  def __repr__(self):
    return (f"LinearDecay(total_steps={self.total_steps}, decay_start={self.decay_start}, "
            f"final={self.final})")
