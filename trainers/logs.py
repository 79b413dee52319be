"""The one shape of what the compiled training loop reports to the outer loop and callbacks.

Inside the compiled loop every step returns a flat float32 vector; `LogLayout` says which slot
is what, builds the vectors in the step, and turns the loop's sums into a `LoopLogs`. Loss and
in-step metrics travel as (total, count) pairs, so a value over a loop is the sum of the
steps' totals over the sum of their counts.
"""

import dataclasses
from collections.abc import Mapping

import tensorflow as tf


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
  """Slot layout of the per-step log vector for a set of tasks (a dict name -> Task)."""

  def __init__(self, tasks, extra_metrics=()):
    """extra_metrics: names every task reports besides its own metrics (e.g. the weight a
    joint weighting method gave it), as Ratios in the step's reports."""
    self.tasks = dict(tasks)
    self.extra_metrics = tuple(extra_metrics)
    units = {t.units for t in self.tasks.values()}
    self.unit = units.pop() if len(units) == 1 else "examples"
    self._index = {}
    for name, task in self.tasks.items():
      for metric in ("loss", *task.metrics, *self.extra_metrics):
        self._index[(name, metric, "total")] = len(self._index)
        self._index[(name, metric, "count")] = len(self._index)
      self._index[(name, "", "units")] = len(self._index)
    self._examples = len(self._index)
    self._units = len(self._index) + 1
    self.size = len(self._index) + 2

  def zeros(self):
    return tf.zeros([self.size])

  def step_vector(self, features, reports):
    """The log vector of one step.

    Args:
      features: the batch's features (its first tensor's leading dimension counts examples).
      reports: task name -> ({"loss": Ratio, metric: Ratio, ...}, units scalar) for the tasks
        trained in the step.
    """
    values = [tf.constant(0.0)] * self.size
    for name, (ratios, units) in reports.items():
      for metric, ratio in ratios.items():
        values[self._index[(name, metric, "total")]] = tf.cast(ratio.total, tf.float32)
        values[self._index[(name, metric, "count")]] = tf.cast(ratio.count, tf.float32)
      values[self._index[(name, "", "units")]] = tf.cast(units, tf.float32)
    examples = tf.cast(tf.shape(tf.nest.flatten(features)[0])[0], tf.float32)
    values[self._examples] = examples
    if self.unit == "examples":
      values[self._units] = examples
    else:
      values[self._units] = tf.reduce_max(tf.stack([tf.cast(u, tf.float32)
                                                    for _, u in reports.values()]))
    return tf.stack(values)

  def to_logs(self, sums, task_steps, *, steps, step, nonfinite_steps):
    """LoopLogs of `steps` steps from their summed vectors [size] and steps per task [tasks]
    (numpy)."""
    tasks = {}
    for i, (name, task) in enumerate(self.tasks.items()):
      metrics = {}
      for metric in ("loss", *task.metrics, *self.extra_metrics):
        total = sums[self._index[(name, metric, "total")]]
        count = sums[self._index[(name, metric, "count")]]
        metrics[metric] = float(total / max(count, 1.0))
      tasks[name] = TaskLogs(steps=int(task_steps[i]), metrics=metrics,
                             units=float(sums[self._index[(name, "", "units")]]))
    return LoopLogs(step=step, steps=steps,
                    examples=float(sums[self._examples]), unit=self.unit,
                    units=float(sums[self._units]), nonfinite_steps=nonfinite_steps,
                    tasks=tasks)
