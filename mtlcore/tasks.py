"""Task: what a head is trained to do, and how that is measured during training."""

import dataclasses
from collections.abc import Callable, Mapping

from mtlcore.errors import ConfigError

Metric = Callable  # (labels, predictions, features) -> float32 scalar


@dataclasses.dataclass(frozen=True)
class Task:
  """One task of a multi-task model.

  Attributes:
    name: the task's name; the model's head and the labels dict use the same key.
    loss: (labels, predictions, features) -> float32 scalar to minimise.
    metrics: name -> (labels, predictions, features) -> float32 scalar, computed in the
      training step beside the loss (e.g. token accuracy). Averaged over the steps of a loop.
  """

  name: str
  loss: Metric
  metrics: Mapping[str, Metric] = dataclasses.field(default_factory=dict)

  def __post_init__(self):
    if not self.name or not self.name.isidentifier():
      raise ConfigError(f"Task name must be a non-empty identifier, got {self.name!r}.")
