"""Tests of mtlcore.optimizers: the Adam math against numpy and the module's state handling."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.optimizers import Adam
from mtlcore.schedules import LinearDecay


def _numpy_adam(grads, lr=0.01, b1=0.9, b2=0.999, eps=1e-7, start=0.0):
  x, m, v = start, 0.0, 0.0
  for t, g in enumerate(grads, 1):
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    x -= lr * np.sqrt(1 - b2**t) / (1 - b1**t) * m / (np.sqrt(v) + eps)
  return x, m, v


def test_adam_matches_numpy_over_several_steps():
  var = tf.Variable([0.5])
  opt = Adam(0.01)
  opt.build([var])
  grads = [0.3, -1.2, 0.7, 2.0]
  for g in grads:
    opt.apply([tf.constant([g])], [var])
  x, m, v = _numpy_adam(grads, start=0.5)
  np.testing.assert_allclose(var.numpy(), [x], rtol=1e-5)
  np.testing.assert_allclose(opt.m[0].numpy(), [m], rtol=1e-5)
  np.testing.assert_allclose(opt.v[0].numpy(), [v], rtol=1e-5)
  assert int(opt.iterations.numpy()) == 4


def test_adam_accepts_indexed_slices_from_an_embedding_lookup():
  table = tf.Variable(tf.ones([4, 2]))
  opt = Adam(0.1)
  opt.build([table])
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.gather(table, [1, 1, 3]))
  opt.apply(tape.gradient(loss, [table]), [table])
  changed = np.any(table.numpy() != 1.0, axis=1)
  np.testing.assert_array_equal(changed, [False, True, False, True])


def test_adam_refuses_a_variable_it_was_not_built_on():
  a, b = tf.Variable(1.0), tf.Variable(2.0)
  opt = Adam()
  opt.build([a])
  with pytest.raises(ConfigError, match="not built on"):
    opt.apply([tf.constant(1.0)], [b])


def test_adam_must_be_built_before_apply_and_only_once():
  a = tf.Variable(1.0)
  opt = Adam()
  with pytest.raises(ConfigError, match="must be built"):
    opt.apply([tf.constant(1.0)], [a])
  opt.build([a])
  with pytest.raises(ConfigError, match="already built"):
    opt.build([a])


def test_adam_rejects_a_non_positive_learning_rate():
  with pytest.raises(ConfigError, match="learning_rate"):
    Adam(0.0)


def test_linear_decay_holds_then_falls_to_final():
  schedule = LinearDecay(100, decay_start=0.6, final=0.1)
  values = [float(schedule(tf.constant(s, tf.int64))) for s in (0, 60, 80, 100, 150)]
  np.testing.assert_allclose(values, [1.0, 1.0, 0.55, 0.1, 0.1], rtol=1e-6)
  assert float(LinearDecay(100, decay_start=1.0)(tf.constant(99, tf.int64))) == 1.0


@pytest.mark.parametrize("kwargs, match", [
    ({"total_steps": 0}, "total_steps"), ({"total_steps": 10, "decay_start": 1.5}, "decay_start"),
    ({"total_steps": 10, "final": -0.1}, "final")])
def test_linear_decay_rejects_bad_settings(kwargs, match):
  with pytest.raises(ConfigError, match=match):
    LinearDecay(**kwargs)


def test_adam_with_a_schedule_matches_numpy_at_the_scheduled_rates():
  """Update k (from 0) uses base x schedule(k), so a resumed optimizer continues the schedule."""
  schedule = LinearDecay(4, decay_start=0.5, final=0.0)
  var = tf.Variable([0.5])
  opt = Adam(0.01, schedule=schedule)
  opt.build([var])
  grads = [0.3, -1.2, 0.7, 2.0]
  rates = []
  for g in grads:
    rates.append(float(opt.current_learning_rate()))
    opt.apply([tf.constant([g])], [var])
  np.testing.assert_allclose(rates, [0.01, 0.01, 0.01, 0.005], rtol=1e-6)
  x, m, v = 0.5, 0.0, 0.0
  for t, (g, lr) in enumerate(zip(grads, rates), 1):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    x -= lr * np.sqrt(1 - 0.999**t) / (1 - 0.9**t) * m / (np.sqrt(v) + 1e-7)
  np.testing.assert_allclose(var.numpy(), [x], rtol=1e-5)
