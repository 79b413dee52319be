"""Metrics as sums: one definition gives the training logs and the held-out evaluation.

A `Metric` maps a batch to a float32 vector of statistics that add up over batches (and
replicas): counts of correct examples, confusion counts per class, sums of squared errors.
`result(sums)` turns the summed vector into the metric's value. The training loop sums the
statistics of its steps and the evaluation (mtlcore.evaluation) sums those of the split's
batches, so a metric has the same unit in `train/` and `eval/`, and the state of an
evaluation is one vector whatever the size of the split.

A plain function returning a mtlcore.tasks.Ratio is a metric too (`as_metric`): its
statistics are (total, count) and its value total / max(count, 1).

Every metric here takes a `mask` of the labelled units (1.0 labelled, 0.0 missing or
padding): a unit without a label adds nothing to any statistic.
"""

import abc

import numpy as np
import tensorflow as tf

from mtlcore.errors import ConfigError


class Metric(abc.ABC):
  """A metric from summable statistics.

  Attributes:
    size: the length of the statistics vector.
    higher_is_better: which way the value improves (checkpoint selection reads it).
  """

  size: int
  higher_is_better = True

  @abc.abstractmethod
  def statistics(self, labels, predictions, features):
    """float32 [size] of one batch; summed over batches before `result`."""

  @abc.abstractmethod
  def result(self, sums):
    """The metric's value (a Python float) from the summed statistics (numpy [size])."""


class RatioMetric(Metric):
  """A function (labels, predictions, features) -> Ratio as a Metric: value total / count
  (e.g. an error rate, with higher_is_better=False)."""

  size = 2

  def __init__(self, fn, higher_is_better=True):
    self.fn = fn
    self.higher_is_better = higher_is_better

  def statistics(self, labels, predictions, features):
    ratio = self.fn(labels, predictions, features)
    return tf.stack([tf.cast(ratio.total, tf.float32), tf.cast(ratio.count, tf.float32)])

  def result(self, sums):
    return float(sums[0] / max(sums[1], 1.0))


def as_metric(metric, where="a metric"):
  """`metric` as a Metric: itself, or a Ratio function wrapped in RatioMetric."""
  if isinstance(metric, Metric):
    return metric
  if callable(metric):
    return RatioMetric(metric)
  raise ConfigError(f"{where} must be a mtlcore.metrics.Metric or a function returning a "
                    f"Ratio, got {type(metric).__name__}.")


def confusion_counts(predicted, actual, mask, num_classes):
  """Per class (true positives, false positives, false negatives), float32 [3, C].

  Args:
    predicted, actual: int [...] class ids in [0, C) (any value where mask is 0).
    mask: float [...] 1.0 where the unit counts.
  """
  mask = tf.cast(mask, tf.float32)[..., None]
  predicted = tf.one_hot(predicted, num_classes) * mask
  actual = tf.one_hot(actual, num_classes) * mask
  axes = list(range(len(predicted.shape) - 1))
  true_positives = tf.reduce_sum(predicted * actual, axes)
  return tf.stack([true_positives, tf.reduce_sum(predicted, axes) - true_positives,
                   tf.reduce_sum(actual, axes) - true_positives])


def macro_f1_of(counts):
  """The mean over classes of F1 = 2 tp / (2 tp + fp + fn), from confusion counts [3, C]
  (numpy); classes never predicted nor present are left out; 0.0 if none is left."""
  tp, fp, fn = np.asarray(counts, np.float64).reshape(3, -1)
  seen = (tp + fp + fn) > 0
  if not seen.any():
    return 0.0
  return float(np.mean(2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])))


def binary_counts(predicted, actual, mask):
  """Per label (true positives, false positives, false negatives) of binary decisions,
  float32 [3, L], from predicted and actual float [..., L] of 0/1 and mask [..., L]."""
  predicted, actual, mask = (tf.reshape(tf.cast(x, tf.float32), [-1, tf.shape(x)[-1]])
                             for x in (predicted, actual, mask))
  true_positives = tf.reduce_sum(predicted * actual * mask, 0)
  return tf.stack([true_positives, tf.reduce_sum(predicted * mask, 0) - true_positives,
                   tf.reduce_sum(actual * mask, 0) - true_positives])


class MacroF1(Metric):
  """Macro-averaged F1 over classes (or labels), a fraction in [0, 1].

  `counts(labels, predictions, features)` returns the batch's confusion counts float32
  [3, C] (`confusion_counts` for one class per unit, `binary_counts` for a yes/no per
  label); they are the statistics."""

  def __init__(self, num_classes, counts):
    self.num_classes = int(num_classes)
    self.size = 3 * self.num_classes
    self.counts = counts

  def statistics(self, labels, predictions, features):
    return tf.reshape(self.counts(labels, predictions, features), [-1])

  def result(self, sums):
    return macro_f1_of(sums)


class RootMeanSquare(Metric):
  """sqrt(sum of squares / count) of `errors(labels, predictions, features)` -> (errors
  float [...], mask float [...]): e.g. RMSE in the targets' unit; lower is better."""

  size = 2
  higher_is_better = False

  def __init__(self, errors):
    self.errors = errors

  def statistics(self, labels, predictions, features):
    errors, mask = self.errors(labels, predictions, features)
    mask = tf.cast(mask, tf.float32)
    return tf.stack([tf.reduce_sum(tf.square(tf.cast(errors, tf.float32)) * mask),
                     tf.reduce_sum(mask)])

  def result(self, sums):
    return float(np.sqrt(sums[0] / max(sums[1], 1.0)))


class AveragePrecision(Metric):
  """Macro average precision over labels of scores in [0, 1], from counts at `thresholds`
  evenly spaced thresholds k / thresholds, k = 0 .. thresholds - 1 (a score s counts as
  positive at threshold t when s >= t).

  Per label, AP = sum over thresholds of (R_k - R_k+1) P_k with R and P the recall and
  precision at the k-th threshold (R beyond the last is 0): the step-wise area under the
  precision-recall curve, exact for scores on the grid and within the grid's spacing
  otherwise. Labels without a positive example are left out of the mean.

  `scores(labels, predictions, features)` returns (scores float [..., L], gold float
  [..., L] of 0/1, mask float [..., L]).
  """

  def __init__(self, num_labels, scores, thresholds=100):
    if thresholds < 2:
      raise ConfigError(f"AveragePrecision needs at least 2 thresholds, got {thresholds}.")
    self.num_labels, self.thresholds = int(num_labels), int(thresholds)
    self.scores = scores
    # Per label: true positives [T], predicted positives [T], positives.
    self.size = self.num_labels * (2 * self.thresholds + 1)

  def statistics(self, labels, predictions, features):
    scores, gold, mask = self.scores(labels, predictions, features)
    scores = tf.reshape(tf.cast(scores, tf.float32), [-1, self.num_labels])
    gold = tf.reshape(tf.cast(gold, tf.float32), [-1, self.num_labels])
    mask = tf.reshape(tf.cast(mask, tf.float32), [-1, self.num_labels])
    # The highest threshold each score reaches, floor(s x T), counted per (label, threshold)
    # and accumulated from the top: no [N, L, T] tensor.
    reached = tf.clip_by_value(tf.cast(tf.floor(scores * self.thresholds), tf.int32), 0,
                               self.thresholds - 1)
    segments = tf.reshape(tf.range(self.num_labels)[None, :] * self.thresholds + reached, [-1])
    cells = self.num_labels * self.thresholds

    def at_least(weights):  # [L, T]: the weights of the scores >= each threshold.
      counts = tf.math.unsorted_segment_sum(tf.reshape(weights, [-1]), segments, cells)
      return tf.cumsum(tf.reshape(counts, [self.num_labels, self.thresholds]), axis=-1,
                       reverse=True)

    hits, predicted = at_least(gold * mask), at_least(mask)
    positives = tf.reduce_sum(gold * mask, 0)
    return tf.concat([tf.reshape(hits, [-1]), tf.reshape(predicted, [-1]), positives], 0)

  def result(self, sums):
    sums = np.asarray(sums, np.float64)
    n, t = self.num_labels, self.thresholds
    hits = sums[:n * t].reshape(n, t)
    predicted = sums[n * t:2 * n * t].reshape(n, t)
    positives = sums[2 * n * t:]
    precisions = []
    for label in range(n):
      if positives[label] == 0:
        continue
      recall = np.append(hits[label] / positives[label], 0.0)
      precision = np.divide(hits[label], predicted[label], out=np.ones(t),
                            where=predicted[label] > 0)
      precisions.append(float(np.sum((recall[:-1] - recall[1:]) * precision)))
    return float(np.mean(precisions)) if precisions else 0.0
