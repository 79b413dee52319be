"""Task sets: what `mtl-train --task_set=NAME` trains, built from plain arguments.

A task set supplies the model, its tasks, the training data for each mode and, where it has
held-out data, an evaluation function. The binaries turn flags into these arguments.
"""

import dataclasses
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from mtlcore.data import toy as toy_data
from mtlcore.model import MultiTaskModel
from mtlcore.networks import toy as toy_network
from mtlcore.tasks import Task


@dataclasses.dataclass
class TaskSet:
  """Everything a trainer needs for one task set.

  Attributes:
    model: the MultiTaskModel (all heads, even in single-task mode).
    tasks: the tasks to train, in order.
    joint_dataset: endless dataset of (features, labels with every task's labels).
    task_datasets: task name -> endless dataset for that task (alternating and single mode).
    steps_per_epoch: batches in one pass over the training data.
    evaluate: split name -> {metric: value} on that split, or None if there is no held-out data.
    selection_metric: the metric of `evaluate("dev")` whose maximum selects the best model.
  """
  model: MultiTaskModel
  tasks: Sequence[Task]
  joint_dataset: tf.data.Dataset
  task_datasets: Mapping[str, tf.data.Dataset]
  steps_per_epoch: int
  evaluate: Callable | None = None
  selection_metric: str | None = None


def build_toy(*, tasks, batch_size, seed, num_examples=4096):
  """The tutorial's two regression tasks: 10 inputs, shared ReLU(20), heads of 1."""
  model = toy_network.build_toy_model(seed=seed)
  model.check_tasks(tasks)
  dataset = toy_data.toy_dataset(num_examples, batch_size=batch_size, seed=seed)
  return TaskSet(model=model, tasks=toy_network.toy_tasks(tasks), joint_dataset=dataset,
                 task_datasets={name: dataset for name in tasks},
                 steps_per_epoch=-(-num_examples // batch_size))
