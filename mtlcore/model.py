"""SharedTrunk, TaskHead and MultiTaskModel: who owns which variables.

A multi-task model is one trunk shared by all tasks and one head per task. The trunk maps
features to a dict of named representations (e.g. {"layer1": ..., "layer2": ...}); each head
reads one of them. `MultiTaskModel.variables_for(task)` is the exact set a step for that task
may change: the task's head plus the trunk. Construction checks that no variable belongs to
two heads, or to a head and the trunk, so that guarantee cannot be broken by accident.
"""

from collections.abc import Mapping

import tensorflow as tf

from mtlcore.errors import ConfigError


class SharedTrunk(tf.Module):
  """Base class of trunks.

  Subclasses set `self.output_sizes`, a dict from representation name to its last-axis size,
  and implement `__call__(features, *, training, seed)` returning a dict with those keys.
  `seed` is an int [2] tensor for dropout (see mtlcore.layers.dropout). Float features arrive
  in `compute_dtype` (set by the MultiTaskModel); a trunk that makes floats from other inputs
  (e.g. embedding lookups) makes them in that type too (mtlcore.precision).
  """

  output_sizes: Mapping[str, int] = {}
  compute_dtype = tf.float32

  def __call__(self, features, *, training, seed):
    raise NotImplementedError

  def variables_of(self, representation):
    """The trainable variables of the layer that outputs `representation` (GradNorm's "last
    shared layer"). This default: all of the trunk's; a trunk of several layers narrows it."""
    del representation
    return self.trainable_variables


class TaskHead(tf.Module):
  """Base class of heads.

  `reads` names the trunk representation the head consumes. Subclasses implement
  `__call__(representation, features, *, training, seed)` and return the task's predictions
  (logits or values); the matching Task's loss interprets them.
  """

  def __init__(self, *, reads, name=None):
    super().__init__(name=name)
    self.reads = reads

  def __call__(self, representation, features, *, training, seed):
    raise NotImplementedError


def _refs(variables):
  return {v.ref() for v in variables}


class MultiTaskModel(tf.Module):
  """A trunk shared by all tasks and one head per task."""

  def __init__(self, trunk, heads, name=None, compute_dtype=tf.float32):
    """Args:
      trunk: a SharedTrunk.
      heads: dict from task name to TaskHead; the names are the model's tasks.
      name: module name.
      compute_dtype: the float type the trunk and heads compute in (mtlcore.precision);
        see `set_compute_dtype`.
    Raises:
      ConfigError: no heads, a head reading a representation the trunk lacks, or a variable
        owned by two heads or by a head and the trunk.
    """
    super().__init__(name=name)
    if not heads:
      raise ConfigError("A MultiTaskModel needs at least one task head.")
    self.trunk = trunk
    self.heads = dict(heads)
    trunk_refs = _refs(trunk.trainable_variables)
    owner = {}
    for task, head in self.heads.items():
      if head.reads not in trunk.output_sizes:
        raise ConfigError(
            f"Head of task '{task}' reads '{head.reads}', but the trunk only produces "
            f"{sorted(trunk.output_sizes)}.")
      for v in head.trainable_variables:
        if v.ref() in trunk_refs:
          raise ConfigError(f"Head of task '{task}' shares variable {v.name} with the trunk.")
        if v.ref() in owner:
          raise ConfigError(
              f"Heads of tasks '{owner[v.ref()]}' and '{task}' share variable {v.name}.")
        owner[v.ref()] = task
    covered = trunk_refs | set(owner)
    stray = [v.name for v in self.trainable_variables if v.ref() not in covered]
    if stray:
      raise ConfigError(f"Variables owned by neither the trunk nor a head: {stray}.")
    self.set_compute_dtype(compute_dtype)

  def set_compute_dtype(self, dtype):
    """Computes in `dtype` from now on: float features are cast to it before the trunk, and
    every head's float output back to float32 (losses, metrics, decoding run in float32).
    The variables stay float32."""
    self.compute_dtype = self.trunk.compute_dtype = tf.as_dtype(dtype)

  def with_tasks(self, tasks):
    """A MultiTaskModel of this trunk and the heads of `tasks` (the same modules, not copies),
    in this compute type: e.g. the model an export serves, without an auxiliary task's head
    and its variables."""
    tasks = self.check_tasks(tasks)
    return MultiTaskModel(self.trunk, {t: self.heads[t] for t in tasks}, name=self.name,
                          compute_dtype=self.compute_dtype)

  @property
  def task_names(self):
    return tuple(self.heads)

  def check_tasks(self, tasks):
    """Returns `tasks` as a tuple, raising ConfigError naming any task without a head."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in self.heads]
    if unknown:
      raise ConfigError(
          f"Unknown task(s) {unknown}; this model has tasks {list(self.heads)}.")
    return tasks

  def variables_for(self, task):
    """The trainable variables a step of `task` may change: the trunk's, then its head's."""
    (task,) = self.check_tasks([task])
    return tuple(self.trunk.trainable_variables) + tuple(self.heads[task].trainable_variables)

  def __call__(self, features, *, tasks=None, training=False, seed=None):
    """Runs the trunk once and the heads of `tasks` (default: all).

    Returns:
      dict from task name to that head's predictions.
    """
    tasks = self.task_names if tasks is None else self.check_tasks(tasks)
    if seed is None:
      if training:
        raise ConfigError("Training-mode calls need a dropout seed.")
      seed = tf.zeros([2], tf.int64)
    low = {k: tf.cast(v, self.compute_dtype) if tf.as_dtype(v.dtype).is_floating else v
           for k, v in features.items()}
    representations = self.trunk(low, training=training, seed=seed)
    outputs = {t: self.heads[t](representations[self.heads[t].reads], features,
                                training=training, seed=seed)
               for t in tasks}
    return tf.nest.map_structure(
        lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs)
