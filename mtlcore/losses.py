"""Loss and metric functions as pure functions on tensors, in the (total, count) contract.

Each returns a mtlcore.tasks.Ratio: the sum over the units the batch holds and the number of
units, both float32 scalars; the trainer divides (see mtlcore.tasks).
"""

import tensorflow as tf

from mtlcore.tasks import Ratio


def squared_error(targets, predictions):
  """Sum of (predictions - targets)^2 over all elements, and the number of elements.

  Args:
    targets, predictions: float [B, ...] of the same shape.
  """
  error = tf.square(predictions - tf.cast(targets, predictions.dtype))
  return Ratio(tf.reduce_sum(error), tf.cast(tf.size(error), tf.float32))


def labelled(labels, mask, num_classes):
  """(labels clipped into [0, C), float mask of the real positions (mask 1.0) whose id lies in
  [0, C)): missing (< 0) and unseen (>= C) labels are left out."""
  labels = tf.cast(labels, tf.int32)
  mask = mask * tf.cast((labels >= 0) & (labels < num_classes), mask.dtype)
  return tf.clip_by_value(labels, 0, num_classes - 1), mask  # Defined values where mask is 0.


def labelled_count(labels, mask, num_classes):
  """The count of masked_sparse_cross_entropy and masked_accuracy, from the labels alone:
  real positions (mask [B, T] 1.0) whose id lies in [0, num_classes)."""
  return tf.reduce_sum(labelled(labels, mask, num_classes)[1])


def sparse_cross_entropy(labels, logits):
  """tf.nn.sparse_softmax_cross_entropy_with_logits of labels int [...] and logits [..., C],
  through its rank-2 form: for inputs of dynamic shape, the general form adds a shape Assert
  that XLA ignores, with a warning per compiled program. The same kernel, the same values."""
  flat = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.reshape(labels, [-1]), logits=tf.reshape(logits, [-1, tf.shape(logits)[-1]]))
  return tf.reshape(flat, tf.shape(labels))


def masked_sparse_cross_entropy(labels, logits, mask):
  """Token-level softmax cross-entropy, summed over the real tokens with a known label.

  Args:
    labels: int [B, T] class ids. Positions that are masked, or whose id lies outside
      [0, C) (a tag never seen in training), add nothing.
    logits: float32 [B, T, C].
    mask: float32 [B, T], 1.0 on real tokens and 0.0 on padding.
  Returns:
    Ratio(sum of cross-entropies in nats, number of tokens counted).
  """
  labels, mask = labelled(labels, mask, tf.shape(logits)[-1])
  xent = sparse_cross_entropy(labels, logits)
  return Ratio(tf.reduce_sum(xent * mask), tf.reduce_sum(mask))


def masked_accuracy(labels, logits, mask):
  """Ratio(labelled real tokens whose argmax over `logits` [B, T, C] equals `labels` [B, T],
  labelled real tokens); missing (< 0) and unseen (>= C) labels are left out."""
  labels, mask = labelled(labels, mask, tf.shape(logits)[-1])
  correct = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), mask.dtype)
  return Ratio(tf.reduce_sum(correct * mask), tf.reduce_sum(mask))
