"""The task kinds (mtlcore.task_kinds) and their heads (mtlcore.heads): losses and metrics
against plain numpy, the missing-label conventions (no loss, gradient, count or metric), the
summable statistics (mtlcore.metrics) adding up over batches, and the load-time checks."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import heads, metrics, task_kinds
from mtlcore.errors import ConfigError

RNG = np.random.default_rng(0)


def _value(task, name, labels, predictions):
  """A task's metric value on one batch, through its statistics."""
  metric = metrics.as_metric(task.metrics[name])
  return metric.result(metric.statistics(labels, predictions, {}).numpy())


def _macro_f1(predicted, gold, classes):
  """Plain definition: mean over the classes seen of 2 tp / (2 tp + fp + fn)."""
  scores = []
  for c in classes:
    tp = np.sum((predicted == c) & (gold == c))
    fp = np.sum((predicted == c) & (gold != c))
    fn = np.sum((predicted != c) & (gold == c))
    if tp + fp + fn:
      scores.append(2 * tp / (2 * tp + fp + fn))
  return np.mean(scores)


def test_classification_loss_and_metrics_leave_out_missing_labels():
  kind = task_kinds.Classification(4)
  task = kind.task("c")
  logits = RNG.normal(size=(12, 4)).astype(np.float32)
  labels = RNG.integers(0, 4, 12).astype(np.int32)
  labels[[1, 5, 6]] = -1
  known = labels >= 0
  ratio = task.loss(labels, logits, {})
  shifted = logits - logits.max(-1, keepdims=True)
  log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
  assert ratio.count.numpy() == 9
  np.testing.assert_allclose(ratio.total.numpy(), -log_p[known, labels[known]].sum(), rtol=1e-5)
  predicted = logits.argmax(-1)
  assert _value(task, "accuracy", labels, logits) == pytest.approx(
      np.mean(predicted[known] == labels[known]))
  assert _value(task, "macro_f1", labels, logits) == pytest.approx(
      _macro_f1(predicted[known], labels[known], range(4)))
  assert task.loss_count(labels, {}).numpy() == 9 and task.count_units(labels, {}).numpy() == 9


@pytest.mark.parametrize("kind,labels,shape", [
    (task_kinds.Classification(3), np.array([2, -1, 0], np.int32), [3, 3]),
    (task_kinds.Regression(), np.array([0.5, np.nan, -1.0], np.float32), [3]),
    (task_kinds.Regression(loss_kind="huber"), np.array([3.0, np.nan, -1.0], np.float32), [3]),
    (task_kinds.MultiLabel(2), np.array([[1, 0], [-1, -1], [0, -1]]), [3, 2])])
def test_a_missing_label_gives_its_example_no_gradient(kind, labels, shape):
  predictions = tf.Variable(RNG.normal(size=shape).astype(np.float32))
  with tf.GradientTape() as tape:
    loss = kind.loss(labels, predictions)
    value = loss.total / loss.count
  grad = tape.gradient(value, predictions).numpy()
  assert np.all(np.isfinite(grad)) and np.all(grad[1] == 0) and np.any(grad[0] != 0), grad


def test_regression_losses_and_metrics_match_numpy():
  targets = RNG.normal(size=20).astype(np.float32) * 3
  targets[[2, 11]] = np.nan
  predictions = RNG.normal(size=20).astype(np.float32)
  known = ~np.isnan(targets)
  error = predictions[known] - targets[known]
  huber = np.where(np.abs(error) <= 1.5, 0.5 * error ** 2, 1.5 * (np.abs(error) - 0.75))
  for loss_kind, expected in [("squared", error ** 2), ("absolute", np.abs(error)),
                              ("huber", huber)]:
    kind = task_kinds.Regression(loss_kind=loss_kind, delta=1.5)
    ratio = kind.loss(targets, predictions)
    assert ratio.count.numpy() == 18
    np.testing.assert_allclose(ratio.total.numpy(), expected.sum(), rtol=1e-5)
  task = task_kinds.Regression().task("r")
  assert _value(task, "mae", targets, predictions) == pytest.approx(np.mean(np.abs(error)),
                                                                    rel=1e-5)
  assert _value(task, "rmse", targets, predictions) == pytest.approx(
      np.sqrt(np.mean(error ** 2)), rel=1e-5)
  several = task_kinds.Regression(outputs=2)
  assert several.loss(np.full([3, 2], np.nan, np.float32), np.zeros([3, 2])).count.numpy() == 0


def _average_precision(scores, gold):
  """scikit-learn's definition: sum over distinct score thresholds, from the highest, of
  (R_n - R_n-1) P_n."""
  order = np.argsort(-scores, kind="stable")
  scores, gold = scores[order], gold[order]
  ap, previous_recall = 0.0, 0.0
  for threshold in np.unique(scores)[::-1]:
    chosen = scores >= threshold
    recall = gold[chosen].sum() / gold.sum()
    ap += (recall - previous_recall) * gold[chosen].mean()
    previous_recall = recall
  return ap


def test_multilabel_metrics_match_numpy_with_missing_labels():
  kind = task_kinds.MultiLabel(3, thresholds=50)
  task = kind.task("m")
  # Probabilities on the threshold grid's cell centres: the histogram is exact there.
  probabilities = (RNG.integers(0, 50, size=(40, 3)) + 0.5) / 50
  logits = np.log(probabilities / (1 - probabilities)).astype(np.float32)
  labels = (RNG.random((40, 3)) < probabilities).astype(np.int32)
  labels[RNG.random((40, 3)) < 0.2] = -1
  known = labels >= 0
  expected = np.mean([_average_precision(probabilities[known[:, j], j],
                                         labels[known[:, j], j]) for j in range(3)])
  assert _value(task, "average_precision", labels, logits) == pytest.approx(expected, rel=1e-5)
  predicted = (logits > 0).astype(np.int32)
  assert _value(task, "accuracy", labels, logits) == pytest.approx(
      np.mean(predicted[known] == labels[known]))
  f1 = [_macro_f1(predicted[known[:, j], j], labels[known[:, j], j], [1]) for j in range(3)]
  assert _value(task, "macro_f1", labels, logits) == pytest.approx(np.mean(f1))
  ratio = kind.loss(labels, logits)
  assert ratio.count.numpy() == known.sum()


@pytest.mark.parametrize("metric_name,kind,make", [
    ("macro_f1", task_kinds.Classification(5),
     lambda n: (RNG.integers(-1, 5, n).astype(np.int32), RNG.normal(size=(n, 5)))),
    ("average_precision", task_kinds.MultiLabel(2, thresholds=20),
     lambda n: (RNG.integers(-1, 2, (n, 2)).astype(np.int32), RNG.normal(size=(n, 2)))),
    ("rmse", task_kinds.Regression(),
     lambda n: (np.where(RNG.random(n) < 0.3, np.nan, RNG.normal(size=n)).astype(np.float32),
                RNG.normal(size=n)))])
def test_statistics_of_batches_add_up_to_those_of_the_whole(metric_name, kind, make):
  metric = metrics.as_metric(kind.task("t").metrics[metric_name])
  labels, predictions = make(30)
  predictions = predictions.astype(np.float32)
  whole = metric.statistics(labels, predictions, {}).numpy()
  parts = sum(metric.statistics(labels[i:i + 7], predictions[i:i + 7], {}).numpy()
              for i in range(0, 30, 7))
  np.testing.assert_allclose(parts, whole, rtol=1e-6)
  assert metric.result(parts) == pytest.approx(metric.result(whole))


def test_label_checks_name_the_place_and_the_example():
  with pytest.raises(ConfigError, match=r"^corpus 'dev', task 'c': label 7 at example 2 is not"):
    task_kinds.Classification(3).check(np.array([0, 1, 7]), "corpus 'dev', task 'c'")
  with pytest.raises(ConfigError, match="integers of shape"):
    task_kinds.Classification(3).check(np.array([0.0, 1.0]), "c")
  with pytest.raises(ConfigError, match=r"example 1 is infinite"):
    task_kinds.Regression().check(np.array([0.0, np.inf], np.float32), "r")
  with pytest.raises(ConfigError, match=r"label 2 at example 0, position 1"):
    task_kinds.MultiLabel(2).check(np.array([[1, 2]]), "m")
  with pytest.raises(ConfigError, match="num_classes >= 2"):
    task_kinds.Classification(1)
  with pytest.raises(ConfigError, match="loss_kind must be one of"):
    task_kinds.Regression(loss_kind="cubic")


@pytest.mark.parametrize("pooling", heads.POOLINGS)
def test_pooled_head_reads_only_the_real_tokens(pooling):
  head = task_kinds.Classification(3, pooling=pooling).head(reads="tokens", input_size=4,
                                                            seed=1, name="sentence")
  tokens = RNG.normal(size=(2, 5, 4)).astype(np.float32)
  features = {"length": np.array([3, 5], np.int32)}
  out = head(tokens, features, training=False, seed=None).numpy()
  tokens[0, 3:] = 100.0  # Padding of row 0.
  again = head(tokens, features, training=False, seed=None).numpy()
  np.testing.assert_array_equal(out, again)
  assert out.shape == (2, 3)
  with pytest.raises(ConfigError, match="no 'length'"):
    head(tokens, {}, training=False, seed=None)
