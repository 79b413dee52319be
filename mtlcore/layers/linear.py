"""Linear: an affine map on the last axis."""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import initializers


class Linear(tf.Module):
  """y = x @ w + b on the last axis of x.

  Inputs are [..., input_size] of any float type; outputs are [..., output_size] of the same
  type (the float32 weights are cast to it).
  """

  def __init__(self, input_size, output_size, *, seed, with_bias=True, name=None):
    """Creates the variables now, so that optimizers can be built before any tracing.

    Args:
      input_size: size of the last input axis.
      output_size: size of the last output axis.
      seed: int; the weights are a pure function of it.
      with_bias: whether to add a bias (initialised to zero).
      name: module name.
    """
    super().__init__(name=name)
    self.input_size = require_positive(f"{self.name} input_size", input_size)
    self.output_size = require_positive(f"{self.name} output_size", output_size)
    self.w = tf.Variable(
        initializers.glorot_uniform([input_size, output_size], seed=[seed, 0]), name="w")
    self.b = tf.Variable(tf.zeros([output_size]), name="b") if with_bias else None

  def __call__(self, inputs):
    # One GEMM over all leading axes, in the inputs' type (mtlcore.precision).
    outputs = tf.tensordot(inputs, tf.cast(self.w, inputs.dtype), axes=1)
    if self.b is not None:
      outputs += tf.cast(self.b, inputs.dtype)
    return outputs
