"""The tutorial's toy task set: two regression tasks on 10 inputs, a shared ReLU layer of 20.

One synthetic data set (mtlcore.data.toy) carries both targets; each task's alternating stream
is that data set shuffled with its own seed. No held-out split; the export serves
{"x": float32 [B, 10]} -> {task: float32 [B, 1]}.
"""

import tensorflow as tf

from mtlcore import export, task_set
from mtlcore.data import batching
from mtlcore.data import toy as toy_data
from mtlcore.errors import require_positive
from mtlcore.networks import toy as toy_network


class ToyTaskSet(task_set.TaskSet):
  """Options: hidden_size (default 20), num_examples (default 4096)."""

  task_names = toy_data.TASKS
  defaults = {"batch_size": 32, "learning_rate": 1e-2, "epochs": 20.0, "clip_norm": 0.0,
              "eval_every": 0, "lr_decay_start": 1.0, "average_decay": 0.0}

  def __init__(self, options):
    task_set.reject_unknown_options("toy", options, ("hidden_size", "num_examples"))
    self.hidden_size = require_positive("hidden_size", options.get("hidden_size", 20))
    self.num_examples = require_positive("num_examples", options.get("num_examples", 4096))

  def options(self):
    return {"hidden_size": self.hidden_size, "num_examples": self.num_examples}

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    del assets_dir, data
    return toy_network.build_toy_model(hidden_size=self.hidden_size, task_names=tasks,
                                       seed=seed)

  def make_tasks(self, model, tasks):
    return toy_network.toy_tasks(tasks)

  def _stream(self, batch_size, seed):
    return task_set.Stream(
        lambda start: toy_data.toy_dataset(self.num_examples, batch_size=batch_size, seed=seed,
                                           start=start),
        steps_per_epoch=batching.num_batches(self.num_examples, batch_size))

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    return self._stream(batch_size, seed)

  def task_dataset(self, data, task, *, batch_size, seed):
    return self._stream(batch_size, seed)

  def export(self, model, tasks, export_dir):
    spec = tf.TensorSpec([None, toy_data.NUM_FEATURES], tf.float32, name="x")
    return export.export_model(export_dir, model, tasks, {"x": spec}, atomically=False)
