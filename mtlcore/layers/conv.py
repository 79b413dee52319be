"""Conv1D: a masked 1-D convolution over time, the building block of the conv trunk."""

import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive
from mtlcore.layers import initializers


WINDOWS = ("centred", "causal", "anticausal")


class Conv1D(tf.Module):
  """1-D convolution over axis 1, followed by ReLU, that ignores padding.

  Inputs [B, T, input_size] of any float type and a mask [B, T] (1.0 on real tokens); outputs
  [B, T, output_size] of the inputs' type, zero at padded positions. Padded inputs are zeroed before the
  convolution, so a sentence's outputs do not depend on how much padding follows it.
  The output at t sees the inputs t-w//2..t+w//2 ("centred", 'SAME' padding), t-w+1..t
  ("causal") or t..t+w-1 ("anticausal"), w the kernel width.
  """

  def __init__(self, input_size, output_size, kernel_width, *, seed, activation=tf.nn.relu,
               window="centred", name=None):
    """Args:
      input_size: features per input position.
      output_size: number of filters.
      kernel_width: positions each filter sees (odd for a centred window).
      seed: int; the weights are a pure function of it.
      activation: applied after the bias; None for linear.
      window: one of WINDOWS.
      name: module name.
    """
    super().__init__(name=name)
    if window not in WINDOWS:
      raise ConfigError(f"{self.name}: window must be one of {WINDOWS}, got {window!r}.")
    self.window = window
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
    padding = "SAME"
    if self.window != "centred":
      before = self.kernel_width - 1 if self.window == "causal" else 0
      inputs = tf.pad(inputs, [[0, 0], [before, self.kernel_width - 1 - before], [0, 0]])
      padding = "VALID"
    outputs = tf.nn.conv1d(inputs, tf.cast(self.w, inputs.dtype), stride=1, padding=padding)
    outputs += tf.cast(self.b, inputs.dtype)
    if self.activation is not None:
      outputs = self.activation(outputs)
    return outputs * mask


class DirectionalConv1D(tf.Module):
  """A causal and an anti-causal Conv1D of output_size / 2 filters each, concatenated: [B, T,
  output_size] ordered like a BiLSTM's output, [forward half | backward half], so the first
  half at t has seen only tokens up to t and the second only tokens from t on."""

  def __init__(self, input_size, output_size, kernel_width, *, seed, name=None):
    super().__init__(name=name)
    if output_size % 2:
      raise ConfigError(f"{self.name}: output_size must be even, got {output_size}.")
    self.halves = [Conv1D(input_size, output_size // 2, kernel_width, seed=seed + d,
                          window=window, name=window)
                   for d, window in enumerate(("causal", "anticausal"))]

  def __call__(self, inputs, mask):
    return tf.concat([half(inputs, mask) for half in self.halves], axis=-1)
