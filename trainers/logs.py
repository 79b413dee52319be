"""The one shape of what the compiled training loop reports to the outer loop and callbacks.

Inside the compiled loop every step returns a flat float32 vector; `LogLayout` says which slot
is what, builds the vectors in the step, and turns the loop's sums into a `LoopLogs`. The loss
travels as a (total, count) pair, so its value over a loop is the sum of the steps' totals
over the sum of their counts; an in-step metric as its summable statistics
(mtlcore.metrics), whose sum over the loop gives its value.
"""

import dataclasses
from collections.abc import Mapping

import tensorflow as tf

from mtlcore import metrics as metrics_lib
from mtlcore.tasks import Ratio


@dataclasses.dataclass(frozen=True)
class TaskLogs:
  """One task over one call into the compiled loop.

  Attributes:
    steps: batches the task was trained on.
    units: units (the task's `units`, e.g. tokens) those batches held for it.
    metrics: "loss" and each in-step metric -> its value over the loop's units.
  """
  steps: int
  units: float
  metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True)
class LoopLogs:
  """One call into the compiled loop.

  Attributes:
    step: global step at its end.
    steps: steps it ran.
    examples: examples in the batches it trained on.
    unit: the unit all trained tasks count ("examples" when they count different ones).
    units: that unit's total over the steps (per step, the most any trained task held).
    nonfinite_steps: steps whose update was skipped as non-finite.
    tasks: task name -> TaskLogs, every task of the trainer (steps 0 if it was not trained).
    seconds: wall time of the call, set by the outer loop.
    first_nonfinite: (what, global step) of the first non-finite step of the call, e.g.
      ("task 'a'", 1234); None without one.
    overflow_steps: fp16 steps skipped because the scaled gradient overflowed (the loss
      scale halves; not non-finite steps).
  """
  step: int
  steps: int
  examples: float
  unit: str
  units: float
  nonfinite_steps: int
  tasks: Mapping[str, TaskLogs]
  seconds: float = 0.0
  first_nonfinite: tuple | None = None
  overflow_steps: int = 0

  @property
  def seconds_per_step(self):
    return self.seconds / max(self.steps, 1)

  def scalars(self):
    """{"TASK/METRIC": value} for the tasks trained in the loop."""
    return {f"{task}/{name}": value for task, logs in self.tasks.items() if logs.steps
            for name, value in logs.metrics.items()}


class LogLayout:
  """Slot layout of the per-step log vector for a set of tasks (a dict name -> Task).

  Per task: the loss as (total, count), each in-step metric's statistics (a Ratio function's
  (total, count), a mtlcore.metrics.Metric's `size` sums), each extra metric's (total,
  count), then its units. Every slot is a sum over steps (and replicas)."""

  def __init__(self, tasks, extra_metrics=()):
    """extra_metrics: names every task reports besides its own metrics (e.g. the weight a
    joint weighting method gave it), as Ratios in the step's reports."""
    self.tasks = dict(tasks)
    self.extra_metrics = tuple(extra_metrics)
    units = {t.units for t in self.tasks.values()}
    self.unit = units.pop() if len(units) == 1 else "examples"
    self._slots = {}  # (task, metric) -> (first slot, width, Metric or None for a Ratio)
    self._units_slot = {}
    size = 0
    for name, task in self.tasks.items():
      named = {"loss": None,
               **{m: metrics_lib.as_metric(f, f"Task '{name}': metric '{m}'")
                  for m, f in task.metrics.items()},
               **{m: None for m in self.extra_metrics}}
      for metric_name, metric in named.items():
        width = 2 if metric is None else metric.size
        self._slots[(name, metric_name)] = (size, width, metric)
        size += width
      self._units_slot[name] = size
      size += 1
    self._examples, self._units = size, size + 1
    self.size = size + 2

  def metric(self, task, name):
    """The mtlcore.metrics.Metric of a task's in-step metric."""
    return self._slots[(task, name)][2]

  def zeros(self):
    return tf.zeros([self.size])

  def step_vector(self, features, reports):
    """The log vector of one step.

    Args:
      features: the batch's features (its first tensor's leading dimension counts examples).
      reports: task name -> ({"loss": Ratio, metric: its statistics [width] or a Ratio, ...},
        units scalar) for the tasks trained in the step.
    """
    pieces = []
    for name in self.tasks:
      values = reports[name][0] if name in reports else {}
      for (task, metric), (_, width, _) in self._slots.items():
        if task != name:
          continue
        value = values.get(metric)
        if value is None:
          pieces.append(tf.zeros([width]))
        elif isinstance(value, Ratio):
          pieces.append(tf.stack([tf.cast(value.total, tf.float32),
                                  tf.cast(value.count, tf.float32)]))
        else:
          pieces.append(tf.reshape(tf.cast(value, tf.float32), [width]))
      units = reports[name][1] if name in reports else 0.0
      pieces.append(tf.reshape(tf.cast(units, tf.float32), [1]))
    examples = tf.cast(tf.shape(tf.nest.flatten(features)[0])[0], tf.float32)
    if self.unit == "examples":
      units = examples
    else:
      units = tf.reduce_max(tf.stack([tf.cast(u, tf.float32) for _, u in reports.values()]))
    return tf.concat([*pieces, tf.stack([examples, units])], 0)

  def extra_vector(self, values):
    """A log vector holding only extra metrics: {metric: [K] values, one per task in order,
    or None}, each as (value, count 1) in its task's slots (added once to the replicas'
    summed vectors, whose own extra slots are zero); None without extra metrics."""
    indices, updates = [], []
    for metric, value in values.items():
      if value is None:
        continue
      for k, name in enumerate(self.tasks):
        start = self._slots[(name, metric)][0]
        indices += [[start], [start + 1]]
        updates += [value[k], tf.constant(1.0)]
    if not indices:
      return None
    return tf.scatter_nd(tf.constant(indices, tf.int32),
                         tf.cast(tf.stack(updates), tf.float32), [self.size])

  def to_logs(self, sums, task_steps, *, steps, step, nonfinite_steps):
    """LoopLogs of `steps` steps from their summed vectors [size] and steps per task [tasks]
    (numpy)."""
    tasks = {}
    for i, name in enumerate(self.tasks):
      metrics = {}
      for (task, metric_name), (start, width, metric) in self._slots.items():
        if task != name:
          continue
        values = sums[start:start + width]
        metrics[metric_name] = (float(values[0] / max(values[1], 1.0)) if metric is None
                                else metric.result(values))
      tasks[name] = TaskLogs(steps=int(task_steps[i]), metrics=metrics,
                             units=float(sums[self._units_slot[name]]))
    return LoopLogs(step=step, steps=steps,
                    examples=float(sums[self._examples]), unit=self.unit,
                    units=float(sums[self._units]), nonfinite_steps=nonfinite_steps,
                    tasks=tasks)
