"""Task: what a head is trained to do, how that is measured in the step, and what a batch holds.

The loss contract: a task's loss returns a `Ratio(total, count)`, the sum of its per-unit
losses over the batch and the number of units it is normalised by (labelled tokens, examples,
elements). The trainer divides, so masking missing labels, normalising by a count gathered
over replicas and weighting tasks all act on that pair instead of re-deriving a mean. In-step
metrics follow the same contract, so a metric averaged over many steps is weighted by what
each step held, not by the number of steps.
"""

import dataclasses
from collections.abc import Callable, Mapping
from typing import NamedTuple

import tensorflow as tf

from mtlcore import metrics as metrics_lib
from mtlcore.errors import ConfigError


class Ratio(NamedTuple):
  """A quantity as (total, count), both float32 scalars; its value is total / max(count, 1)."""
  total: tf.Tensor
  count: tf.Tensor

  def value(self):
    return self.total / tf.maximum(self.count, 1.0)


# (labels, predictions, features) -> Ratio.
RatioFn = Callable
# (labels, features) -> float32 scalar: how many units (tokens, examples) a batch holds.
UnitCounter = Callable
# (labels, features) -> float32 scalar: the count of the loss's Ratio, without predictions.
LossCounter = Callable


def count_examples(labels, features):
  """The default unit count: examples in the batch (the leading dimension of the labels)."""
  del features
  return tf.cast(tf.shape(tf.nest.flatten(labels)[0])[0], tf.float32)


@dataclasses.dataclass(frozen=True)
class Task:
  """One task of a multi-task model.

  Attributes:
    name: the task's name; the model's head and the labels dict use the same key.
    loss: (labels, predictions, features) -> Ratio(sum of losses, units it is normalised by).
    metrics: name -> a mtlcore.metrics.Metric (summable statistics, e.g. confusion counts
      for macro-F1) or a function (labels, predictions, features) -> Ratio, computed in the
      training step beside the loss and, by the same definition, by the engine's evaluation
      (mtlcore.evaluation); each reaches TensorBoard and the progress line as TASK/NAME.
      "loss" is reserved.
    eval_metrics: name -> a mtlcore.metrics.Metric that only the held-out evaluation
      computes (e.g. span F1 of decoded outputs, whose statistics may come from host code:
      it is not compiled with XLA); its `result` may be a dict of whole keys
      ({"spans/f1": ..., "spans/precision": ...}) instead of one value for TASK/NAME.
    units: what `count_units` counts, e.g. "tokens"; throughput is reported per unit.
    count_units: (labels, features) -> float32 scalar, the units of a batch this task learns
      from (labelled tokens, examples). Default: examples.
    loss_count: optional (labels, features) -> float32 scalar, the `count` of the loss's Ratio
      on that batch, computed from the batch alone (no predictions). Joint training of
      several tasks under a tf.distribute strategy needs it: each replica's loss is divided
      by the count over all replicas *before* its backward pass (mtlcore.trainers.replicas).
      The trainer checks it against the loss's own count at every such step.
  """

  name: str
  loss: RatioFn
  metrics: Mapping[str, RatioFn] = dataclasses.field(default_factory=dict)
  units: str = "examples"
  count_units: UnitCounter = count_examples
  loss_count: LossCounter | None = None
  eval_metrics: Mapping[str, object] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not self.name or not self.name.isidentifier():
      raise ConfigError(f"Task name must be a non-empty identifier, got {self.name!r}.")
    if "loss" in self.metrics:
      raise ConfigError(f"Task '{self.name}': 'loss' is reserved and cannot name a metric.")
    bad = [m for m in self.metrics if not m or "/" in m]
    if bad:
      raise ConfigError(f"Task '{self.name}': metric names must be non-empty and hold no '/', "
                        f"got {bad}.")
    for name, metric in {**self.metrics, **self.eval_metrics}.items():
      metrics_lib.as_metric(metric, f"Task '{self.name}': metric '{name}'")
    both = sorted(set(self.metrics) & set(self.eval_metrics) | {"loss"} & set(self.eval_metrics))
    if both:
      raise ConfigError(f"Task '{self.name}': {both} name both an in-step metric (or the "
                        f"loss) and an evaluation metric.")
    if not self.units.isidentifier():
      raise ConfigError(f"Task '{self.name}': units must be an identifier, got {self.units!r}.")
