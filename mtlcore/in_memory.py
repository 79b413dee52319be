"""InMemoryTaskSet: a task set over numpy arrays, from task kinds and a trunk.

The shortest way to train tasks of the built-in kinds (mtlcore.task_kinds) on data that fits
in memory. A subclass declares `kinds` ({task: kind}) and writes two methods:

  trunk(seed) -> a mtlcore.model.SharedTrunk;
  arrays(data_dir) -> {corpus: (features {key: array [N, ...]}, labels {task: array [N, ...]})}

with the corpora
  "train": the joint training set (its labels: any of the tasks', missing where unknown);
  TASK (optional): that task's own training set for alternating training (default "train");
  each name in `splits`: held-out data, scored by the engine (mtlcore.evaluation).
A task absent from a corpus' labels has every label there missing (the kind's convention:
-1 for a class, NaN for a target). Every array is checked at load: an error names the corpus,
the task and the example. The heads are the kinds' own, reading `reads` (default: the
trunk's only representation); the export serves the features' shapes and types.
"""

import numpy as np
import tensorflow as tf

from mtlcore import batching, export, task_set
from mtlcore.errors import ConfigError
from mtlcore.model import MultiTaskModel
from mtlcore.options import reject_unknown


class InMemoryTaskSet(task_set.TaskSet):
  """Subclasses set `kinds` and implement `trunk` and `arrays` (see the module)."""

  kinds = {}
  reads = None
  eval_batch_size = 256

  def __init_subclass__(cls, **kwargs):
    super().__init_subclass__(**kwargs)
    cls.task_names = tuple(cls.kinds)

  def __init__(self, options=None):
    reject_unknown(type(self).__name__, options or {}, self.option_schema)

  def trunk(self, seed):
    """The shared trunk, its variables made from `seed`."""
    raise NotImplementedError

  def arrays(self, data_dir):
    """{corpus: (features, labels)} of numpy arrays (see the module)."""
    raise NotImplementedError

  def load_data(self, data_dir):
    data = self.arrays(data_dir)
    if "train" not in data:
      raise ConfigError(f"{type(self).__name__}.arrays: no 'train' corpus; got {sorted(data)}.")
    for split in self.splits:
      if split not in data:
        raise ConfigError(f"{type(self).__name__}.arrays: no corpus for the split '{split}'.")
    checked = {}
    for corpus, (features, labels) in data.items():
      features = {k: np.asarray(v) for k, v in features.items()}
      sizes = {len(v) for v in [*features.values(), *labels.values()]}
      if len(sizes) != 1:
        raise ConfigError(f"{type(self).__name__}.arrays: corpus '{corpus}' mixes example "
                          f"counts {sorted(sizes)} in its features and labels.")
      unknown = sorted(set(labels) - set(self.kinds))
      if unknown:
        raise ConfigError(f"{type(self).__name__}.arrays: corpus '{corpus}' has labels of "
                          f"unknown task(s) {unknown}; the tasks are {list(self.kinds)}.")
      n = sizes.pop()
      for task, kind in self.kinds.items():
        if task in labels:
          kind.check(labels[task], f"{type(self).__name__}.arrays: corpus '{corpus}', "
                                      f"task '{task}'")
      labels = {t: np.asarray(labels[t]) if t in labels else kind.missing(n)
                for t, kind in self.kinds.items()}
      checked[corpus] = (features, labels)
    self._feature_specs = {k: tf.TensorSpec([None, *v.shape[1:]], tf.as_dtype(v.dtype), name=k)
                           for k, v in checked["train"][0].items()}
    return checked

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    del assets_dir, data
    trunk = self.trunk(seed)
    reads = self.reads or next(iter(trunk.output_sizes))
    heads = {t: self.kinds[t].head(reads=reads, input_size=trunk.output_sizes[reads],
                                   seed=seed + 1000 * (i + 1), name=f"{t}_head")
             for i, t in enumerate(tasks)}
    return MultiTaskModel(trunk, heads, name=type(self).__name__.lower())

  def make_tasks(self, model, tasks):
    return [self.kinds[t].task(t) for t in tasks]

  @staticmethod
  def _stream(features, labels, batch_size, seed):
    make_dataset, steps = batching.in_memory((features, labels), batch_size=batch_size,
                                             seed=seed)
    return task_set.Stream(make_dataset, steps_per_epoch=steps)

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    features, labels = data["train"]
    return self._stream(features, {t: labels[t] for t in tasks}, batch_size, seed)

  def task_dataset(self, data, task, *, batch_size, seed):
    features, labels = data.get(task, data["train"])
    return self._stream(features, {task: labels[task]}, batch_size, seed)

  def eval_dataset(self, data, tasks, split, *, batch_size):
    features, labels = data[split]
    return tf.data.Dataset.from_tensor_slices(
        (features, {t: labels[t] for t in tasks})).batch(batch_size)

  def export(self, model, tasks, export_dir):
    specs = getattr(self, "_feature_specs", None)
    if specs is None:
      raise ConfigError(f"{type(self).__name__}.export: the data was not loaded, so the "
                        f"features' shapes are unknown.")
    return export.export_model(export_dir, model, tasks, specs, atomically=False)
