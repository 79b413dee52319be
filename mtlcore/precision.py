"""Mixed precision: compute in a low float type; variables, losses and optimizer state in fp32.

`--precision` names the compute type of a run's model: "fp32" (the default), "bf16" or "fp16".
The variables stay float32. Each layer casts its weights to the type of its inputs at use, the
model casts its float features to the compute type before the trunk and every head's output
back to float32, so losses, metrics, the heads' own float32 parts (e.g. a structured loss's forward
algorithm) and the optimizer all run in float32. With fp32 every cast is the identity: the fp32 step is unchanged.

fp16's narrow range needs loss scaling (`LossScale`): the gradient is taken of loss x scale
and divided by it afterwards. A step whose loss is finite but whose scaled gradient overflows
is skipped (no optimizer sees it: an Adam's update counter does not advance) and halves the
scale; `growth_interval` good steps in a row double it. bf16 has float32's range and needs
none.
"""

import tensorflow as tf

from mtlcore import choices
from mtlcore.errors import ConfigError

PRECISIONS = dict(zip(choices.PRECISIONS, (tf.float32, tf.bfloat16, tf.float16)))


def compute_dtype(precision):
  """The tf.DType of a precision name."""
  if precision not in PRECISIONS:
    raise ConfigError(f"--precision must be one of {list(PRECISIONS)}, got {precision!r}.")
  return PRECISIONS[precision]


class LossScale(tf.Module):
  """Dynamic loss scaling: the scale (float32) and the good steps since it last changed."""

  def __init__(self, initial=2.0**15, *, growth_interval=2000, name=None):
    super().__init__(name=name)
    if not initial >= 1.0 or growth_interval < 1:
      raise ConfigError(f"A loss scale needs initial >= 1 and growth_interval >= 1, got "
                        f"{initial} and {growth_interval}.")
    self.growth_interval = int(growth_interval)
    self.scale = tf.Variable(float(initial), trainable=False, name="scale")
    self.good_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="good_steps")

  def overflowed(self, loss_finite, gradient_finite):
    """bool scalar: the loss is finite and the scaled gradient is not, while the scale can
    still fall. At scale 1 a non-finite gradient is a real one, not an overflow."""
    return loss_finite & ~gradient_finite & (self.scale > 1.0)

  def update(self, finite):
    """After a step: halve the scale (not below 1) if its gradient was not finite, else count
    a good step and double the scale after `growth_interval` of them."""
    grow = finite & (self.good_steps + 1 >= self.growth_interval)
    self.scale.assign(tf.where(finite, tf.where(grow, 2.0 * self.scale, self.scale),
                               tf.maximum(self.scale / 2.0, 1.0)))
    self.good_steps.assign(tf.where(finite & ~grow, self.good_steps + 1, 0))
