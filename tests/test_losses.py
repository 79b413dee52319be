"""mtlcore.losses: the cross-entropy XLA compiles without a shape Assert is bitwise the
general one."""

import numpy as np
import tensorflow as tf

from mtlcore import losses


def test_the_rank_2_cross_entropy_is_bitwise_the_general_one():
  logits = tf.random.stateless_normal([3, 7, 11], seed=[1, 2]) * 4.0
  labels = tf.random.stateless_uniform([3, 7], seed=[3, 4], maxval=11, dtype=tf.int32)
  np.testing.assert_array_equal(
      losses.sparse_cross_entropy(labels, logits).numpy(),
      tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits).numpy())
