"""Tests of mtlcore.layers: shapes, masking, determinism and XLA agreement."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.layers import BiLSTM, Conv1D, Dropout, Embed, Linear
from mtlcore.layers.recurrent import lstm_recurrence


def test_linear_matches_numpy_on_rank_3_inputs():
  layer = Linear(4, 3, seed=7)
  layer.b.assign([1.0, 2.0, 3.0])
  x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
  np.testing.assert_allclose(layer(tf.constant(x)), x @ layer.w.numpy() + [1.0, 2.0, 3.0],
                             rtol=1e-5, atol=1e-6)


def test_layers_with_the_same_seed_have_the_same_weights():
  a, b, c = Linear(4, 3, seed=1), Linear(4, 3, seed=1), Linear(4, 3, seed=2)
  np.testing.assert_array_equal(a.w.numpy(), b.w.numpy())
  assert not np.array_equal(a.w.numpy(), c.w.numpy())


@pytest.mark.parametrize("make", [
    lambda: Linear(0, 3, seed=0),
    lambda: Linear(3, -1, seed=0),
    lambda: Embed(10, 0, seed=0),
    lambda: Conv1D(4, 8, 0, seed=0),
    lambda: BiLSTM(4, 0, seed=0),
    lambda: Dropout(1.0, site=0),
])
def test_non_positive_sizes_raise_a_config_error(make):
  with pytest.raises(ConfigError, match="must be"):
    make()


def test_embed_looks_up_rows():
  embed = Embed(6, 3, seed=0)
  out = embed(tf.constant([[1, 5], [0, 1]]))
  assert out.shape == (2, 2, 3)
  np.testing.assert_array_equal(out[0, 0], embed.embeddings.numpy()[1])
  np.testing.assert_array_equal(out[1, 1], embed.embeddings.numpy()[1])


def test_conv1d_output_ignores_padding_content():
  conv = Conv1D(3, 5, 3, seed=0)
  x = tf.random.stateless_normal([2, 6, 3], seed=[1, 2])
  mask = tf.sequence_mask([6, 3], 6, dtype=tf.float32)
  noisy = tf.where(mask[:, :, None] > 0, x, 100.0)
  a, b = conv(x, mask), conv(noisy, mask)
  np.testing.assert_allclose(a, b, atol=1e-6)
  np.testing.assert_array_equal(a[1, 3:], 0.0)


@pytest.mark.parametrize("window", ["centred", "causal", "anticausal"])
def test_a_conv_window_sees_exactly_its_tokens(window):
  """Changing input t' moves output t iff t' is in t's window: t-1..t+1 (centred, width 3),
  t-2..t (causal), t..t+2 (anticausal), padding and sentence ends included."""
  conv = Conv1D(3, 4, 3, seed=0, activation=None, window=window)
  x = tf.random.stateless_normal([1, 7, 3], seed=[3, 4])
  mask = tf.sequence_mask([6], 7, dtype=tf.float32)
  base = conv(x, mask).numpy()[0]
  offsets = {"centred": (-1, 1), "causal": (-2, 0), "anticausal": (0, 2)}[window]
  for changed in range(6):
    moved = conv(x + tf.one_hot(changed, 7)[None, :, None], mask).numpy()[0]
    for t in range(6):
      sees = offsets[0] <= changed - t <= offsets[1]
      assert np.any(moved[t] != base[t]) == sees, (window, changed, t)
    np.testing.assert_array_equal(moved[6], 0.0)


def _numpy_lstm(x, kernel_x, kernel_h, bias):
  """Reference single-direction LSTM over x [T, D] (gates i, f, g, o)."""
  sig = lambda z: 1 / (1 + np.exp(-z))
  h_size = kernel_h.shape[0]
  h, c, out = np.zeros(h_size), np.zeros(h_size), []
  for t in range(x.shape[0]):
    z = x[t] @ kernel_x + h @ kernel_h + bias
    i, f, g, o = np.split(z, 4)
    c = sig(f) * c + sig(i) * np.tanh(g)
    h = sig(o) * np.tanh(c)
    out.append(h)
  return np.array(out)


def test_bilstm_matches_a_numpy_reference_within_each_length():
  lstm = BiLSTM(3, 4, seed=0)
  x = tf.random.stateless_normal([2, 5, 3], seed=[3, 4])
  lengths = tf.constant([5, 2])
  out = lstm(x, lengths).numpy()
  assert out.shape == (2, 5, 8)
  kx = lstm.input_kernel.numpy().reshape(3, 2, 16)
  for b, n in enumerate([5, 2]):
    seq = x.numpy()[b, :n]
    fwd = _numpy_lstm(seq, kx[:, 0], lstm.recurrent_kernel.numpy()[0], lstm.bias.numpy()[0])
    bwd = _numpy_lstm(seq[::-1], kx[:, 1], lstm.recurrent_kernel.numpy()[1],
                      lstm.bias.numpy()[1])[::-1]
    np.testing.assert_allclose(out[b, :n, :4], fwd, atol=1e-5)
    np.testing.assert_allclose(out[b, :n, 4:], bwd, atol=1e-5)
    np.testing.assert_array_equal(out[b, n:], 0.0)


def test_bilstm_gradients_agree_under_xla():
  lstm = BiLSTM(3, 4, seed=0)
  x = tf.random.stateless_normal([2, 5, 3], seed=[3, 4])
  lengths = tf.constant([5, 2])

  def grads(x, lengths):
    with tf.GradientTape() as tape:
      loss = tf.reduce_sum(tf.square(lstm(x, lengths)))
    return tape.gradient(loss, lstm.trainable_variables)

  for eager, compiled in zip(grads(x, lengths), tf.function(grads, jit_compile=True)(x, lengths)):
    np.testing.assert_allclose(eager, compiled, atol=1e-5)


def _autodiff_lstm(projected, kernel):
  """lstm_recurrence written as plain ops over a Python loop, differentiated by TensorFlow."""
  h = kernel.shape[1]
  state_h = state_c = tf.zeros([projected.shape[1], projected.shape[2], h])
  outputs = []
  for t in range(projected.shape[0]):
    i, f, g, o = tf.split(projected[t] + tf.linalg.matmul(state_h, kernel), 4, axis=-1)
    state_c = tf.sigmoid(f) * state_c + tf.sigmoid(i) * tf.tanh(g)
    state_h = tf.sigmoid(o) * tf.tanh(state_c)
    outputs.append(state_h)
  return tf.stack(outputs)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_the_hand_written_lstm_gradient_equals_automatic_differentiation(jit_compile):
  projected = tf.random.stateless_normal([6, 2, 3, 4 * 5], seed=[1, 2])
  kernel = tf.random.stateless_normal([2, 5, 4 * 5], seed=[3, 4]) * 0.5
  weights = tf.random.stateless_normal([6, 2, 3, 5], seed=[5, 6])  # An asymmetric loss.

  def value_and_grads(lstm, projected, kernel):
    with tf.GradientTape() as tape:
      tape.watch([projected, kernel])
      loss = tf.reduce_sum(lstm(projected, kernel) * weights)
    return [loss, *tape.gradient(loss, [projected, kernel])]

  ours = tf.function(lambda p, k: value_and_grads(lstm_recurrence, p, k),
                     jit_compile=jit_compile)(projected, kernel)
  reference = value_and_grads(_autodiff_lstm, projected, kernel)
  for got, want in zip(ours, reference):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  assert float(tf.reduce_max(tf.abs(reference[2]))) > 0.1  # The kernel gradient is not trivial.


def test_dropout_is_a_function_of_the_seed_and_the_site():
  x = tf.ones([4, 100])
  seed = tf.constant([1, 2], tf.int64)
  site0, site1 = Dropout(0.5, site=0), Dropout(0.5, site=1)
  a = site0(x, seed=seed, training=True)
  compiled = tf.function(lambda x, s: site0(x, seed=s, training=True), jit_compile=True)
  np.testing.assert_array_equal(a, compiled(x, seed))
  assert not np.array_equal(a, site1(x, seed=seed, training=True))
  assert not np.array_equal(a, site0(x, seed=seed + 1, training=True))
  assert set(np.unique(a.numpy())) == {0.0, 2.0}
  np.testing.assert_array_equal(site0(x, seed=seed, training=False), x)


def test_hash_uniform_is_uniform_and_identical_under_xla():
  from mtlcore.layers.dropout import hash_uniform  # pylint: disable=g-import-not-at-top
  seed = tf.constant([5, 123456789012], tf.int64)
  eager = hash_uniform([100000], seed).numpy()
  compiled = tf.function(lambda s: hash_uniform([100000], s), jit_compile=True)(seed).numpy()
  np.testing.assert_array_equal(eager, compiled)
  assert eager.min() >= 0.0 and eager.max() < 1.0
  counts = np.histogram(eager, bins=10, range=(0, 1))[0]
  assert np.all(np.abs(counts - 10000) < 500), counts
  assert abs(np.corrcoef(eager[:-1], eager[1:])[0, 1]) < 0.02
