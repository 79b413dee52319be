"""SavedModel exports that serve exactly the tasks a run trained, written atomically.

`save_atomically` writes into a staging directory beside `export_dir` and moves it in only
once it is complete (mtlcore.files.write_output_directory), so a failed export never leaves
half a model where a good one was, and never replaces a directory of the user's. `save`
writes into a directory as it is: a TaskSet's `export`, whose directory the engine stages.

`ExportedModel` serves a model whose features are dense tensors: the inputs are the features
(as `feature_specs` says), the outputs each task head's predictions.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.files import write_output_directory


def save(module, signatures, directory):
  """tf.saved_model.save into `directory` (new or empty) as it is, with no staging."""
  tf.saved_model.save(module, directory, signatures=signatures)
  return directory


def save_atomically(module, signatures, export_dir, *, source=None, overwrite=False):
  """`save` into a staging directory, then moved into export_dir, which must be new, empty or
  an earlier export (of `source`, or any with `overwrite`): mtlcore.files' rules."""
  try:
    return write_output_directory(export_dir, lambda d: save(module, signatures, d),
                                  kind="export", source=source, overwrite=overwrite,
                                  flag="--export_dir")
  except OSError as e:
    raise ConfigError(f"--export_dir={export_dir}: cannot write there ({e.strerror}).") from None


class ExportedModel(tf.Module):
  """A MultiTaskModel on dense features, serving the predictions of `tasks`."""

  def __init__(self, model, tasks, feature_specs):
    super().__init__(name="exported_model")
    self.model = model
    self.tasks = tuple(tasks)
    self.serve = tf.function(
        lambda features: self.model(features, tasks=self.tasks, training=False),
        input_signature=[dict(feature_specs)], autograph=False)


def export_model(export_dir, model, tasks, feature_specs, *, atomically=True):
  """Writes a SavedModel whose `serving_default` maps features {name: TensorSpec} to
  {task: predictions} for `tasks`: staged and moved in (save_atomically), or, with
  atomically=False, into export_dir as it is (save)."""
  module = ExportedModel(model, tasks, feature_specs)
  return (save_atomically if atomically else save)(
      module, {"serving_default": module.serve}, export_dir)
