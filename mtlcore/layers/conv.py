"""Conv1D: a masked 1-D convolution over time, the building block of the conv trunk."""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import initializers


class Conv1D(tf.Module):
  """'SAME' 1-D convolution over axis 1, followed by ReLU, that ignores padding.

  Inputs [B, T, input_size] of any float type and a mask [B, T] (1.0 on real tokens); outputs
  [B, T, output_size] of the inputs' type, zero at padded positions. Padded inputs are zeroed before the
  convolution, so a sentence's outputs do not depend on how much padding follows it.
  """

  def __init__(self, input_size, output_size, kernel_width, *, seed, activation=tf.nn.relu,
               name=None):
    """Args:
      input_size: features per input position.
      output_size: number of filters.
      kernel_width: positions each filter sees (odd, so the window is centred).
      seed: int; the weights are a pure function of it.
      activation: applied after the bias; None for linear.
      name: module name.
    """
    super().__init__(name=name)
    self.input_size = require_positive(f"{self.name} input_size", input_size)
    self.output_size = require_positive(f"{self.name} output_size", output_size)
    self.kernel_width = require_positive(f"{self.name} kernel_width", kernel_width)
    self.activation = activation
    self.w = tf.Variable(
        initializers.glorot_uniform([kernel_width, input_size, output_size], seed=[seed, 0],
                                    fan_in=kernel_width * input_size),
        name="w")
    self.b = tf.Variable(tf.zeros([output_size]), name="b")

  def __call__(self, inputs, mask):
    mask = tf.cast(mask, inputs.dtype)[:, :, None]
    inputs *= mask
    outputs = tf.nn.conv1d(inputs, tf.cast(self.w, inputs.dtype), stride=1, padding="SAME")
    outputs += tf.cast(self.b, inputs.dtype)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs * mask
