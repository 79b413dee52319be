"""Tests of mtlcore.averaging.WeightAverage and of trainers that keep one."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.averaging import WeightAverage
from mtlcore.errors import ConfigError
from mtlcore.toy import network as toy_network
from mtlcore.optimizers import Adam
from mtlcore.toy import data as toy_data
from mtlcore.trainers.joint import JointTrainer


def test_average_follows_the_warmed_up_decay():
  var = tf.Variable([1.0, -2.0])
  average = WeightAverage([var], decay=0.9)
  expected = var.numpy().copy()
  for n, value in enumerate([[3.0, 0.0], [5.0, 1.0], [-1.0, 4.0]]):
    var.assign(value)
    average.update()
    d = min(0.9, (1 + n) / (10 + n))
    expected = d * expected + (1 - d) * np.array(value)
  np.testing.assert_allclose(average.averages[0].numpy(), expected, rtol=1e-6)
  assert int(average.updates.numpy()) == 3


def test_swapped_in_holds_the_averages_then_restores_the_weights_bitwise():
  var = tf.Variable(tf.random.stateless_normal([5, 3], seed=[1, 2]))
  average = WeightAverage([var], decay=0.5)
  trained = var.numpy().copy()
  average.averages[0].assign(tf.zeros([5, 3]))
  with average.swapped_in():
    np.testing.assert_array_equal(var.numpy(), np.zeros([5, 3]))
  np.testing.assert_array_equal(var.numpy(), trained)
  with pytest.raises(RuntimeError):
    with average.swapped_in():
      raise RuntimeError("evaluation failed")
  np.testing.assert_array_equal(var.numpy(), trained)


def test_decay_outside_the_open_interval_is_refused():
  with pytest.raises(ConfigError, match="decay"):
    WeightAverage([tf.Variable(1.0)], decay=1.0)


def test_joint_trainer_updates_the_average_once_per_applied_step_under_xla():
  model = toy_network.build_toy_model(seed=0)
  average = WeightAverage(model.trainable_variables, decay=0.99)
  trainer = JointTrainer(model=model, tasks=toy_network.toy_tasks(("y1", "y2")),
                         optimizer=Adam(0.01), dataset=toy_data.toy_dataset(256, batch_size=32,
                                                                             seed=0),
                         weight_average=average, jit_compile=True)
  trainer.train(7)
  assert int(average.updates.numpy()) == 7
  trained = [v.numpy().copy() for v in model.trainable_variables]
  averaged = [a.numpy() for a in average.averages]
  assert any(not np.allclose(t, a) for t, a in zip(trained, averaged))
  with trainer.evaluation_weights():
    for v, a in zip(model.trainable_variables, averaged):
      np.testing.assert_array_equal(v.numpy(), a)
  for v, t in zip(model.trainable_variables, trained):
    np.testing.assert_array_equal(v.numpy(), t)
