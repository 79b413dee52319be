"""BiLSTM: a masked bidirectional LSTM written for XLA, with a hand-written backward pass.

Both directions run in one `tf.while_loop` (`lstm_recurrence`): the input projection for every
time step and both directions is one matmul done before the loop, and the loop body holds each
direction's [B, H] x [H, 4H] matmul and fused gate nonlinearity as a chain of its own, which
XLA:CPU runs on two threads at once. The backward direction reads each sentence reversed within
its own length (`tf.reverse_sequence`), so padding always trails the real tokens in both
directions and no state has to be carried across it.

Why a hand-written gradient: differentiating the loop automatically gives a backward loop with
two matmuls per step (one of them accumulating the recurrent kernel's gradient step by step)
and one small kernel per forward operation. Here the backward loop does one matmul per step
(the gradient flowing to the previous state) and writes the gates' gradients out; the kernel's
gradient is then one [H, T*B] x [T*B, 4H] matmul after the loop. On the 2-core CPU this is
1.3x faster for a layer's forward and backward at [32, 36, 164] -> 2 x 128 (benchmarks).
Running the directions as two chains instead of one batched matmul per step made the
recurrence's forward and backward at [36, 2, 32, 4 x 128] 1.16x faster again, and mtl-bench's
joint and default steps 1.08-1.12x; the default step with the language-model task gained
nothing (0.97-0.99x): there the batched loop already overlapped with the LM head's matmuls.
"""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import initializers


def lstm_recurrence(projected, recurrent_kernel):
  """Runs Z independent LSTM recurrences (here: the two directions) side by side.

  Args:
    projected: [T, Z, B, 4H], the input projections plus bias for every step, gates ordered
      i, f, g, o; Z must be known when the function is traced. Its type is the compute type
      (mtlcore.precision).
    recurrent_kernel: [Z, H, 4H], of the same type.
  Returns:
    The hidden states [T, Z, B, H], starting from zero state and cell. The gate activations
    and the cell run in float32 whatever the compute type; only the matmul inputs and the
    returned states are in the compute type.

  Differentiable in both arguments by a hand-written backward pass (see the module docstring);
  equal to automatic differentiation of the same loop to float32 rounding (tests/test_layers).
  """
  if projected.shape[1] is None:
    raise ValueError("lstm_recurrence needs the number of recurrences Z (axis 1) at trace time.")
  return _recurrence(projected, recurrent_kernel)


@tf.custom_gradient
def _recurrence(projected, recurrent_kernel):
  # Each of the Z recurrences is its own chain of ops in the loop body (its own matmul and
  # gate kernels, its own arrays), so XLA:CPU's thunk executor runs the chains side by side
  # on separate threads; one batched [Z, B, H] x [Z, H, 4H] matmul per step ran them in turn.
  dtype = projected.dtype
  steps, batch = tf.shape(projected)[0], tf.shape(projected)[2]
  chains = range(projected.shape[1])
  h = recurrent_kernel.shape[-1] // 4
  kernels = [recurrent_kernel[z] for z in chains]
  # One sigmoid over all four gates: tanh(x) = 2 sigmoid(2x) - 1 for the g block.
  scale = tf.concat([tf.ones([2 * h]), tf.fill([h], 2.0), tf.ones([h])], axis=0)

  def array(size, width, array_dtype=tf.float32, **kwargs):
    return tf.TensorArray(array_dtype, size=size, element_shape=[None, width], **kwargs)

  # Read and written through TensorArrays: slicing `projected[t]` or updating a stacked tensor
  # would cost a full [T, ...] buffer per step in the gradient (quadratic in T).
  inputs = [array(steps, 4 * h, dtype).unstack(projected[:, z]) for z in chains]
  zeros = tf.zeros([batch, h])

  def step(t, hs, cs, states, cells, activations):
    def chain(z):
      gates = inputs[z].read(t) + tf.linalg.matmul(hs[z], kernels[z])
      a = tf.sigmoid(tf.cast(gates, tf.float32) * scale) * scale - (scale - 1.0)
      i, f, g, o = tf.split(a, 4, axis=-1)
      c = f * cs[z] + i * g
      state = tf.cast(o * tf.tanh(c), dtype)
      return (state, c, states[z].write(t, state), cells[z].write(t + 1, c),
              activations[z].write(t, a))
    return (t + 1, *map(list, zip(*[chain(z) for z in chains])))

  _, _, _, states, cells, activations = tf.while_loop(
      lambda t, *_: t < steps, step,
      (tf.constant(0), [tf.cast(zeros, dtype) for _ in chains], [zeros for _ in chains],
       [array(steps, h, dtype) for _ in chains],
       [array(steps + 1, h).write(0, zeros) for _ in chains],
       [array(steps, 4 * h) for _ in chains]),
      maximum_iterations=steps)
  states = tf.stack([s.stack() for s in states], axis=1)  # [T, Z, B, H]
  # Stacked here, not in grad: a SavedModel cannot hold a gradient that captures an array.
  cells, activations = [c.stack() for c in cells], [a.stack() for a in activations]

  def grad(d_states):
    """d_states [T, Z, B, H] -> (d_projected [T, Z, B, 4H], d_recurrent_kernel [Z, H, 4H])."""
    upstream = [array(steps, h, dtype).unstack(d_states[:, z]) for z in chains]
    cells_read = [array(steps + 1, h, clear_after_read=False).unstack(c)  # Read twice.
                  for c in cells]
    activations_read = [array(steps, 4 * h).unstack(a) for a in activations]
    kernels_t = [tf.transpose(k) for k in kernels]
    # d sigmoid = a (1 - a); d tanh = 1 - a^2 = (1 - a)(1 + a): (1 - a)(a + is_g).
    is_g = scale - 1.0  # 1 on the g block, 0 elsewhere.

    def back(t, dh_next, dc_next, d_gates):
      def chain(z):
        a = activations_read[z].read(t)
        i, f, g, o = tf.split(a, 4, axis=-1)
        c, c_prev = cells_read[z].read(t + 1), cells_read[z].read(t)
        dh = tf.cast(upstream[z].read(t), tf.float32) + dh_next[z]
        tanh_c = tf.tanh(c)
        dc = dh * o * (1.0 - tanh_c * tanh_c) + dc_next[z]
        d_a = tf.concat([dc * g, dc * c_prev, dc * i, dh * tanh_c], axis=-1)
        d_gate = tf.cast(d_a * (1.0 - a) * (a + is_g), dtype)
        dh_prev = tf.cast(tf.linalg.matmul(d_gate, kernels_t[z]), tf.float32)
        return dh_prev, dc * f, d_gates[z].write(t, d_gate)
      return (t - 1, *map(list, zip(*[chain(z) for z in chains])))

    _, _, _, d_gates = tf.while_loop(
        lambda t, *_: t >= 0, back,
        (steps - 1, [zeros for _ in chains], [zeros for _ in chains],
         [array(steps, 4 * h, dtype) for _ in chains]),
        maximum_iterations=steps)
    d_gates = tf.stack([d.stack() for d in d_gates], axis=1)  # [T, Z, B, 4H]
    previous = tf.concat([tf.zeros_like(states[:1]), states[:-1]], axis=0)
    return d_gates, tf.einsum("tzbh,tzbg->zhg", previous, d_gates)

  return states, grad


class BiLSTM(tf.Module):
  """Masked bidirectional LSTM.

  `__call__(inputs, lengths)`: inputs [B, T, input_size] of any float type (the matmuls run in
  it), lengths [B] int32 (number of real tokens, <= T). Returns [B, T, 2 * hidden_size]:
  forward states then backward states, zero at padded positions. Gates are ordered i, f, g, o;
  the forget bias starts at 1.
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
    dtype = inputs.dtype  # The compute type (mtlcore.precision); the variables are float32.
    # Both directions' input projections in one [B*T, D] x [D, 8H] matmul. A projection is per
    # position, so projecting then reversing equals reversing then projecting.
    projected = tf.reshape(
        tf.linalg.matmul(tf.reshape(inputs, [-1, self.input_size]),
                         tf.cast(self.input_kernel, dtype)),
        [batch, steps, 2, 4 * h]) + tf.cast(self.bias, dtype)
    projected = tf.stack([
        projected[:, :, 0],
        tf.reverse_sequence(projected[:, :, 1], lengths, seq_axis=1, batch_axis=0)])
    projected = tf.transpose(projected, [2, 0, 1, 3])  # [T, 2, B, 4H]
    outputs = lstm_recurrence(projected, tf.cast(self.recurrent_kernel, dtype))  # [T,2,B,H]
    outputs = tf.transpose(outputs, [1, 2, 0, 3])  # [2, B, T, H]
    forward = outputs[0]
    backward = tf.reverse_sequence(outputs[1], lengths, seq_axis=1, batch_axis=0)
    mask = tf.sequence_mask(lengths, steps, dtype=inputs.dtype)[:, :, None]
    return tf.concat([forward, backward], axis=-1) * mask
