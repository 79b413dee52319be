"""Loss functions as pure functions on tensors: each returns a float32 scalar."""

import tensorflow as tf


def mean_squared_error(targets, predictions):
  """Mean over all elements of (predictions - targets)^2. Both [B, ...] float32."""
  return tf.reduce_mean(tf.square(predictions - tf.cast(targets, predictions.dtype)))


def masked_sparse_cross_entropy(labels, logits, mask):
  """Token-level softmax cross-entropy averaged over real tokens.

  Args:
    labels: int [B, T] class ids. Positions that are masked, or whose id lies outside
      [0, C) (a tag never seen in training), add nothing to the loss.
    logits: float32 [B, T, C].
    mask: float32 [B, T], 1.0 on real tokens and 0.0 on padding.
  Returns:
    sum(mask * xent) / max(sum(mask), 1) over the positions kept, in nats per token.
  """
  labels = tf.cast(labels, tf.int32)
  num_classes = tf.shape(logits)[-1]
  mask *= tf.cast((labels >= 0) & (labels < num_classes), mask.dtype)
  labels = tf.clip_by_value(labels, 0, num_classes - 1)  # Defined values where mask is 0.
  xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  return tf.reduce_sum(xent * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def masked_accuracy(labels, logits, mask):
  """Fraction of real tokens whose argmax over `logits` [B, T, C] equals `labels` [B, T]."""
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32),
                             tf.cast(labels, tf.int32)), mask.dtype)
  return tf.reduce_sum(correct * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
