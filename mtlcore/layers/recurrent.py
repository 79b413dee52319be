"""BiLSTM: a masked bidirectional LSTM written for XLA.

Both directions run in one `tf.while_loop`: the input projection for every time step and
both directions is one matmul done before the loop, and the loop body is a single batched
[2, B, H] x [2, H, 4H] matmul plus the gate arithmetic. The backward direction reads each
sentence reversed within its own length (`tf.reverse_sequence`), so padding always trails the
real tokens in both directions and no state has to be carried across it.
"""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import initializers


class BiLSTM(tf.Module):
  """Masked bidirectional LSTM.

  `__call__(inputs, lengths)`: inputs [B, T, input_size] of any float type (the computation
  runs in it), lengths [B] int32 (number of real tokens, <= T). Returns [B, T, 2 * hidden_size]: forward states then backward states,
  zero at padded positions. Gates are ordered i, f, g, o; the forget bias starts at 1.
  """

  def __init__(self, input_size, hidden_size, *, seed, name=None):
    super().__init__(name=name)
    self.input_size = require_positive(f"{self.name} input_size", input_size)
    self.hidden_size = h = require_positive(f"{self.name} hidden_size", hidden_size)
    self.input_kernel = tf.Variable(
        initializers.glorot_uniform([input_size, 2 * 4 * h], seed=[seed, 0], fan_out=4 * h),
        name="input_kernel")
    self.recurrent_kernel = tf.Variable(
        tf.stack([
            tf.concat([initializers.orthogonal(h, h, seed=[seed, 1 + 4 * d + k])
                       for k in range(4)], axis=1)
            for d in range(2)]),
        name="recurrent_kernel")  # [2 directions, H, 4H]
    forget_bias = tf.concat([tf.zeros([h]), tf.ones([h]), tf.zeros([2 * h])], axis=0)
    self.bias = tf.Variable(tf.stack([forget_bias, forget_bias]), name="bias")  # [2, 4H]

  def __call__(self, inputs, lengths):
    h = self.hidden_size
    batch, steps = tf.shape(inputs)[0], tf.shape(inputs)[1]
    lengths = tf.cast(lengths, tf.int32)
    reversed_inputs = tf.reverse_sequence(inputs, lengths, seq_axis=1, batch_axis=0)
    both = tf.stack([inputs, reversed_inputs])  # [2, B, T, D]
    dtype = inputs.dtype  # The compute type (mtlcore.precision); the variables are float32.
    kernel = tf.reshape(tf.cast(self.input_kernel, dtype), [self.input_size, 2, 4 * h])
    bias = tf.cast(self.bias, dtype)
    recurrent_kernel = tf.cast(self.recurrent_kernel, dtype)
    projected = tf.einsum("zbtd,dzg->tzbg", both, kernel) + bias[:, None, :]  # [T,2,B,4H]
    # Read through a TensorArray: the gradient of slicing `projected[t]` would add a full
    # [T, 2, B, 4H] buffer per step (quadratic in T); a TensorArray read's gradient is a write.
    projected = tf.TensorArray(inputs.dtype, size=steps, element_shape=[2, None, 4 * h]).unstack(
        projected)

    def step(t, state_h, state_c, outputs):
      gates = projected.read(t) + tf.linalg.matmul(state_h, recurrent_kernel)  # [2,B,4H]
      i, f, g, o = tf.split(gates, 4, axis=-1)
      state_c = tf.sigmoid(f) * state_c + tf.sigmoid(i) * tf.tanh(g)
      state_h = tf.sigmoid(o) * tf.tanh(state_c)
      return t + 1, state_h, state_c, outputs.write(t, state_h)

    zeros = tf.zeros([2, batch, h], inputs.dtype)
    outputs = tf.TensorArray(inputs.dtype, size=steps, element_shape=[2, None, h])
    _, _, _, outputs = tf.while_loop(
        lambda t, *_: t < steps, step, (tf.constant(0), zeros, zeros, outputs),
        maximum_iterations=steps)
    outputs = tf.transpose(outputs.stack(), [1, 2, 0, 3])  # [2, B, T, H]
    forward = outputs[0]
    backward = tf.reverse_sequence(outputs[1], lengths, seq_axis=1, batch_axis=0)
    mask = tf.sequence_mask(lengths, steps, dtype=inputs.dtype)[:, :, None]
    return tf.concat([forward, backward], axis=-1) * mask
