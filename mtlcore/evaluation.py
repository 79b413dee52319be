"""Evaluation by the engine: each task's loss and metrics over a held-out data set.

The metrics are the tasks' own (mtlcore.tasks.Task.metrics, mtlcore.metrics), the ones the
training logs report: one definition, one unit in `train/` and `eval/`. The data set is
read batch by batch; each batch gives every metric's summable statistics (one compiled
function, traced once for every batch shape), and only their running sum is kept: the
evaluation's state is one float64 vector whatever the size of the split.
"""

import numpy as np
import tensorflow as tf

from mtlcore import metrics as metrics_lib
from mtlcore.errors import ConfigError, traced_control_flow


class Evaluator:
  """Scores a model's `tasks` (mtlcore.tasks.Task) on data sets of (features, labels).

  Labels are a dict {task: labels}; a task absent from a batch's labels has no label there
  (as one whose labels are all missing). Keys of the result: "TASK/loss" (unless
  `with_loss` is False), "TASK/METRIC" of each in-step and evaluation-only metric
  (Task.eval_metrics; one whose result is a dict gives those keys instead), and for a trunk
  with gates (SharedTrunk.gate_widths) "gates/GATE/COLUMN": the gate's mean weight on that
  column (an expert, SharedTrunk.gate_columns) over the data set's examples (a sentence
  trunk's: over its real tokens); for a trunk whose gates give exact zeros
  (SharedTrunk.sparse_gates), also "gates/GATE/nonzero": the mean number of columns with a
  non-zero weight per example (token).
  """

  def __init__(self, model, tasks, *, with_loss=True):
    self.model = model
    self.tasks = tuple(tasks)
    model.check_tasks([t.name for t in self.tasks])
    self._slots = []  # (key, task name, Metric, first slot, size)
    size = 0
    for task in self.tasks:
      named = {"loss": metrics_lib.RatioMetric(task.loss, higher_is_better=False)} \
          if with_loss else {}
      named.update({m: metrics_lib.as_metric(f, f"Task '{task.name}': metric '{m}'")
                    for m, f in {**task.metrics, **task.eval_metrics}.items()})
      for name, metric in named.items():
        self._slots.append((f"{task.name}/{name}", task.name, metric, size, metric.size))
        size += metric.size
    sparse = model.trunk.sparse_gates
    for name, columns in model.trunk.gate_columns().items():  # A mixture's gates, if any.
      gate = _GateMean(name, columns, sparse=sparse)
      self._slots.append((f"gates/{name}", None, gate, size, gate.size))
      size += gate.size
    self.size = size
    self._statistics = tf.function(self._batch_statistics, reduce_retracing=True,
                                   autograph=False)

  def _batch_statistics(self, features, labels):
    """float32 [size]: every metric's statistics on one batch."""
    names = tuple(t.name for t in self.tasks)
    if self.model.trunk.gate_widths():  # One pass through the trunk for both.
      predictions, gates = self.model.predictions_and_gates(features, tasks=names)
    else:
      predictions, gates = self.model(features, tasks=names, training=False), {}
    pieces = []
    for _, task, metric, _, size in self._slots:
      if task is None:  # A gate: its weights summed over the batch, and the batch's size.
        weights = gates[metric.name]
        pieces.append(tf.reduce_sum(weights, 0))
        if metric.sparse:  # The non-zero weights, counted over the batch.
          pieces.append(tf.reduce_sum(tf.cast(weights != 0, tf.float32))[None])
        pieces.append(tf.cast(tf.shape(weights)[:1], tf.float32))
      elif task in labels:
        pieces.append(tf.reshape(tf.cast(
            metric.statistics(labels[task], predictions[task], features), tf.float32), [size]))
      else:
        pieces.append(tf.zeros([size]))
    return tf.concat(pieces, 0)

  def statistics(self, dataset):
    """The summed statistics (numpy float64 [size]) of every batch of `dataset`."""
    sums = np.zeros([self.size], np.float64)
    for batch in dataset:
      if not (isinstance(batch, tuple) and len(batch) == 2 and isinstance(batch[1], dict)):
        raise ConfigError("An evaluation data set must yield (features, {task: labels}) "
                          "pairs.")
      try:
        sums += self._statistics(*batch).numpy()
      except tf.errors.OperatorNotAllowedInGraphError as e:
        raise traced_control_flow(e, "The evaluation") from None
    return sums

  def results(self, sums):
    """{"TASK/METRIC": value} from summed statistics."""
    out = {}
    for key, _, metric, start, size in self._slots:
      value = metric.result(sums[start:start + size])
      out.update(value if isinstance(value, dict) else {key: value})
    return out

  def __call__(self, dataset):
    """{"TASK/METRIC": value} of the model on every batch of `dataset`."""
    return self.results(self.statistics(dataset))


class _GateMean:
  """A gate's statistics [size]: its weights summed over examples [width], with `sparse` the
  number of its non-zero weights [1], then the examples [1]; as its mean weight per column
  (and the mean number of non-zero columns per example)."""

  def __init__(self, name, columns, *, sparse=False):
    self.name, self.columns, self.sparse = name, tuple(columns), bool(sparse)
    self.size = len(self.columns) + 1 + self.sparse

  def result(self, values):
    count = max(float(values[-1]), 1.0)
    out = {f"gates/{self.name}/{column}": float(values[e]) / count
           for e, column in enumerate(self.columns)}
    if self.sparse:
      out[f"gates/{self.name}/nonzero"] = float(values[len(self.columns)]) / count
    return out

