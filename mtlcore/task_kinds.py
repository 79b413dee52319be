"""Task kinds: the common tasks with their head, loss, metrics and missing-label convention.

  kind                   labels (per example)          missing label   loss
  Classification(C)      int class id in [0, C)        -1              softmax cross-entropy
  MultiLabel(L)          L values of 1 or 0            -1 (or NaN)     sigmoid cross-entropy
  Regression(D)          float [] (D=None) or [D]      NaN             squared, absolute, Huber

A missing label adds nothing to the loss, its gradient or any metric, in either training
mode and under every weighting: the loss's count is the number of labelled units (examples,
or (example, label) pairs for MultiLabel, targets for Regression), so a batch where a task
has no label gives it Ratio(0, 0) and the joint step leaves that task's own variables alone.

`kind.task(name)` is the mtlcore.tasks.Task (loss, in-step metrics, the counts the trainer
needs); `kind.head(reads=, input_size=, seed=, name=)` the head whose predictions the loss
reads: logits [B, C] or [B, L], values [B] or [B, D]. `Classification(C, pooling="mean")`
classifies sentences over a token-level representation [B, T, H] (mtlcore.heads.PooledHead).
Metrics are fractions (accuracy 0.82, not 82) and the same numbers in `train/` and `eval/`:
  Classification: accuracy, macro_f1 (over the classes seen in gold or prediction)
  MultiLabel: accuracy (per label at probability 0.5), macro_f1 (per label, positive class),
    average_precision (macro over labels with a positive; `thresholds` evenly spaced scores)
  Regression: mae, rmse (in the targets' unit; lower is better)
"""

import dataclasses

import numpy as np
import tensorflow as tf

from mtlcore import heads, losses, metrics
from mtlcore.errors import ConfigError
from mtlcore.tasks import Ratio, Task

REGRESSION_LOSSES = ("squared", "absolute", "huber")


def _sum_ratio(values, mask):
  mask = tf.cast(mask, tf.float32)
  return Ratio(tf.reduce_sum(tf.cast(values, tf.float32) * mask), tf.reduce_sum(mask))


def _examples_with_a_label(mask):
  """Examples [B, ...] with at least one labelled unit, as a float32 scalar."""
  mask = tf.reshape(tf.cast(mask, tf.float32), [tf.shape(mask)[0], -1])
  return tf.reduce_sum(tf.reduce_max(mask, 1))


def _head(*, pooling, reads, input_size, outputs, seed, name, squeeze=False):
  if pooling is None:
    return heads.DenseHead(reads=reads, input_size=input_size, outputs=outputs, seed=seed,
                           squeeze=squeeze, name=name)
  return heads.PooledHead(reads=reads, input_size=input_size, outputs=outputs, seed=seed,
                          pooling=pooling, squeeze=squeeze, name=name)


@dataclasses.dataclass(frozen=True)
class Classification:
  """One class of `num_classes` per example (or per sentence, with `pooling`).

  Attributes:
    num_classes: C >= 2.
    pooling: None for an example-level representation [B, H]; "mean", "max" or "attention"
      to classify token-level representations [B, T, H] (sentence classification).
  """
  num_classes: int
  pooling: str | None = None

  def __post_init__(self):
    if not isinstance(self.num_classes, int) or self.num_classes < 2:
      raise ConfigError(f"Classification needs num_classes >= 2, got {self.num_classes!r}.")

  @staticmethod
  def _every(labels):
    """The mask of mtlcore.losses' masked functions over every example of labels [B]."""
    return tf.ones(tf.shape(labels), tf.float32)

  def loss(self, labels, logits, features=None):
    """Ratio(sum of softmax cross-entropies in nats, labelled examples)."""
    return losses.masked_sparse_cross_entropy(labels, logits, self._every(labels))

  def accuracy(self, labels, logits, features=None):
    return losses.masked_accuracy(labels, logits, self._every(labels))

  def confusion(self, labels, logits, features=None):
    ids, known = losses.labelled(labels, self._every(labels), self.num_classes)
    return metrics.confusion_counts(tf.argmax(logits, -1, output_type=tf.int32), ids, known,
                                    self.num_classes)

  def count(self, labels, features=None):
    return losses.labelled_count(labels, self._every(labels), self.num_classes)

  def task(self, name):
    return Task(name, loss=self.loss, loss_count=self.count, count_units=self.count,
                metrics={"accuracy": self.accuracy,
                         "macro_f1": metrics.MacroF1(self.num_classes, self.confusion)})

  def head(self, *, reads, input_size, seed, name=None):
    return _head(pooling=self.pooling, reads=reads, input_size=input_size,
                 outputs=self.num_classes, seed=seed, name=name)

  def missing(self, num_examples):
    """Labels for `num_examples` examples, all missing."""
    return np.full([num_examples], -1, np.int32)

  def check(self, labels, where):
    """ConfigError naming `where` unless `labels` are int ids in [-1, C), shape [N]."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
      raise ConfigError(f"{where}: class labels must be integers of shape [N], got "
                        f"{labels.dtype} {list(labels.shape)}.")
    bad = np.flatnonzero((labels < -1) | (labels >= self.num_classes))
    if bad.size:
      raise ConfigError(f"{where}: label {labels[bad[0]]} at example {bad[0]} is not a class "
                        f"id in [0, {self.num_classes}) nor -1 (missing).")


@dataclasses.dataclass(frozen=True)
class MultiLabel:
  """`num_labels` independent yes/no labels per example.

  Attributes:
    num_labels: L >= 1.
    thresholds: evenly spaced probabilities at which average precision is counted.
    pooling: as Classification's.
  """
  num_labels: int
  thresholds: int = 100
  pooling: str | None = None

  def __post_init__(self):
    if not isinstance(self.num_labels, int) or self.num_labels < 1:
      raise ConfigError(f"MultiLabel needs num_labels >= 1, got {self.num_labels!r}.")

  @staticmethod
  def _known(labels):
    """(labels as 0/1 floats, float mask of the labelled (example, label) pairs)."""
    labels = tf.cast(labels, tf.float32)
    known = (labels == 0.0) | (labels == 1.0)  # -1 and NaN are missing.
    return tf.where(known, labels, 0.0), tf.cast(known, tf.float32)

  def loss(self, labels, logits, features=None):
    """Ratio(sum of sigmoid cross-entropies in nats, labelled (example, label) pairs)."""
    gold, known = self._known(labels)
    xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=gold, logits=logits)
    return _sum_ratio(xent, known)

  def accuracy(self, labels, logits, features=None):
    gold, known = self._known(labels)
    return _sum_ratio(tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), gold), tf.float32),
                      known)

  def confusion(self, labels, logits, features=None):
    gold, known = self._known(labels)
    return metrics.binary_counts(tf.cast(logits > 0, tf.float32), gold, known)

  def scores(self, labels, logits, features=None):
    gold, known = self._known(labels)
    return tf.sigmoid(logits), gold, known

  def count(self, labels, features=None):
    return tf.reduce_sum(self._known(labels)[1])

  def task(self, name):
    examples = lambda labels, features: _examples_with_a_label(self._known(labels)[1])
    return Task(name, loss=self.loss, loss_count=self.count, count_units=examples,
                metrics={"accuracy": self.accuracy,
                         "macro_f1": metrics.MacroF1(self.num_labels, self.confusion),
                         "average_precision": metrics.AveragePrecision(
                             self.num_labels, self.scores, self.thresholds)})

  def head(self, *, reads, input_size, seed, name=None):
    return _head(pooling=self.pooling, reads=reads, input_size=input_size,
                 outputs=self.num_labels, seed=seed, name=name)

  def missing(self, num_examples):
    return np.full([num_examples, self.num_labels], -1, np.int32)

  def check(self, labels, where):
    labels = np.asarray(labels)
    if labels.ndim != 2 or labels.shape[1] != self.num_labels:
      raise ConfigError(f"{where}: multi-label labels must have shape [N, {self.num_labels}], "
                        f"got {list(labels.shape)}.")
    values = labels.astype(np.float64)
    bad = np.argwhere(~np.isnan(values) & (values != 0) & (values != 1) & (values != -1))
    if bad.size:
      example, label = bad[0]
      raise ConfigError(f"{where}: label {labels[example, label]} at example {example}, "
                        f"position {label} is not 1, 0 or -1 (missing).")


@dataclasses.dataclass(frozen=True)
class Regression:
  """One real target per example (`outputs` None) or `outputs` targets.

  Attributes:
    outputs: None for targets [B]; D for targets [B, D].
    loss_kind: "squared" (0.5 is not applied: (p - y)^2), "absolute" or "huber".
    delta: Huber's threshold, in the targets' unit.
    pooling: as Classification's.
  """
  outputs: int | None = None
  loss_kind: str = "squared"
  delta: float = 1.0
  pooling: str | None = None

  def __post_init__(self):
    if self.loss_kind not in REGRESSION_LOSSES:
      raise ConfigError(f"Regression loss_kind must be one of {list(REGRESSION_LOSSES)}, got "
                        f"{self.loss_kind!r}.")
    if self.outputs is not None and (not isinstance(self.outputs, int) or self.outputs < 1):
      raise ConfigError(f"Regression outputs must be None or >= 1, got {self.outputs!r}.")
    if not self.delta > 0:
      raise ConfigError(f"Regression delta must be positive, got {self.delta!r}.")

  @staticmethod
  def _errors(targets, predictions):
    """(predictions - targets, float mask of the known targets); 0 error where NaN."""
    targets = tf.cast(targets, tf.float32)
    known = tf.math.logical_not(tf.math.is_nan(targets))
    return (tf.cast(predictions, tf.float32) - tf.where(known, targets, 0.0),
            tf.cast(known, tf.float32))

  def loss(self, targets, predictions, features=None):
    """Ratio(sum of per-target losses, known targets)."""
    errors, known = self._errors(targets, predictions)
    size = tf.abs(errors)
    if self.loss_kind == "squared":
      values = tf.square(errors)
    elif self.loss_kind == "absolute":
      values = size
    else:
      values = tf.where(size <= self.delta, 0.5 * tf.square(errors),
                        self.delta * (size - 0.5 * self.delta))
    return _sum_ratio(tf.where(known > 0, values, 0.0), known)

  def absolute_error(self, targets, predictions, features=None):
    errors, known = self._errors(targets, predictions)
    return _sum_ratio(tf.abs(errors), known)

  def count(self, targets, features=None):
    return tf.reduce_sum(tf.cast(tf.math.logical_not(tf.math.is_nan(
        tf.cast(targets, tf.float32))), tf.float32))

  def task(self, name):
    examples = lambda targets, features: _examples_with_a_label(
        self._errors(targets, tf.zeros_like(tf.cast(targets, tf.float32)))[1])
    return Task(name, loss=self.loss, loss_count=self.count, count_units=examples,
                metrics={"mae": metrics.RatioMetric(self.absolute_error,
                                                    higher_is_better=False),
                         "rmse": metrics.RootMeanSquare(
                             lambda y, p, f: self._errors(y, p))})

  def head(self, *, reads, input_size, seed, name=None):
    return _head(pooling=self.pooling, reads=reads, input_size=input_size,
                 outputs=self.outputs or 1, seed=seed, name=name, squeeze=self.outputs is None)

  def missing(self, num_examples):
    shape = [num_examples] if self.outputs is None else [num_examples, self.outputs]
    return np.full(shape, np.nan, np.float32)

  def check(self, targets, where):
    targets = np.asarray(targets)
    shape = [None] if self.outputs is None else [None, self.outputs]
    if targets.ndim != len(shape) or (self.outputs and targets.shape[1] != self.outputs) \
        or not np.issubdtype(targets.dtype, np.floating):
      raise ConfigError(f"{where}: regression targets must be floats of shape "
                        f"{['N', *shape[1:]]}, got {targets.dtype} {list(targets.shape)}.")
    bad = np.argwhere(np.isinf(targets))
    if bad.size:
      raise ConfigError(f"{where}: target at example {bad[0][0]} is infinite (NaN marks a "
                        f"missing target).")
