"""The tutorial's toy task set: two regression tasks on 10 inputs, a shared ReLU layer of 20.

One synthetic data set (mtlcore.toy.data) carries both targets; each task's alternating stream
is that data set shuffled with its own seed. No held-out split; the export serves
{"x": float32 [B, 10]} -> {task: float32 [B, 1]}.
"""

import tensorflow as tf

from mtlcore import batching, export, task_set
from mtlcore.errors import ConfigError, require_positive
from mtlcore.options import reject_unknown
from mtlcore.toy import data as toy_data
from mtlcore.toy import network as toy_network
from mtlcore.toy.options import TOY


class ToyTaskSet(task_set.TaskSet):
  """Options: mtlcore.toy.options (hidden_size, num_examples, network)."""

  task_names = toy_data.TASKS
  option_schema = TOY.options
  defaults = TOY.run_defaults

  def __init__(self, options):
    reject_unknown("toy", options, self.option_schema)
    options = {**TOY.option_defaults(), **options}
    self.hidden_size = require_positive("hidden_size", options["hidden_size"])
    self.num_examples = require_positive("num_examples", options["num_examples"])
    self.network = options["network"]
    if self.network not in ("mtlcore", "keras"):
      raise ConfigError(f"--network must be mtlcore or keras, got {self.network!r}.")

  def options(self):
    return {"hidden_size": self.hidden_size, "num_examples": self.num_examples,
            "network": self.network}

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    del assets_dir, data
    if self.network == "keras":
      return toy_network.build_keras_toy_model(hidden_size=self.hidden_size, task_names=tasks)
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
