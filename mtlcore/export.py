"""SavedModel exports that serve exactly the tasks a run trained, written atomically.

`save_atomically` writes into a staging directory beside `export_dir` and moves it in only
once it is complete (mtlcore.files.write_output_directory), so a failed export never leaves
half a model where a good one was, and never replaces a directory of the user's. `save`
writes into a directory as it is: a TaskSet's `export`, whose directory the engine stages.

`ExportedTagger` (signature `serving_default`) tags raw string tokens; it carries the
vocabularies as lookup tables and the tag names as constants, so serving needs nothing but the
export directory:
  inputs:  tokens  string [B, T]  one sentence per row, padded with "" (empty string).
  outputs: length  int32  [B]     number of tokens per row;
           TASK    string [B, T]  the predicted tag of each token, "" at padding.
The object's `task_order` (a string variable) lists the served tasks in the run's order.

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


class ExportedTagger(tf.Module):
  """Featurizer + model + tag names, with one serving function."""

  def __init__(self, model, featurizer, vocabularies, tasks):
    super().__init__(name="exported_tagger")
    self.model = model
    self.featurizer = featurizer
    self.tasks = tuple(tasks)
    # Saved with the model, so a reader knows the order of the task outputs.
    self.task_order = tf.Variable(list(self.tasks), trainable=False, name="task_order")
    self.tag_names = {t: tf.constant(list(vocabularies.tags[t]), tf.string) for t in self.tasks}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens")])
  def tag(self, tokens):
    length = tf.reduce_sum(tf.cast(tf.not_equal(tokens, ""), tf.int32), axis=1)
    features = self.featurizer(tokens)
    features["length"] = length
    predictions = self.model(features, tasks=self.tasks, training=False)
    mask = tf.sequence_mask(length, tf.shape(tokens)[1])
    outputs = {"length": length}
    for t in self.tasks:
      ids = self.model.heads[t].decode(predictions[t], length)
      outputs[t] = tf.where(mask, tf.gather(self.tag_names[t], ids), "")
    return outputs


def export_tagger(export_dir, model, featurizer, vocabularies, tasks, *, atomically=True):
  """Writes the tagger's SavedModel (tasks: the heads to serve) to export_dir: staged and
  moved in (save_atomically), or, with atomically=False, into export_dir as it is (save)."""
  module = ExportedTagger(model, featurizer, vocabularies, tasks)
  return (save_atomically if atomically else save)(
      module, {"serving_default": module.tag}, export_dir)


class ExportedModel(tf.Module):
  """A MultiTaskModel on dense features, serving the predictions of `tasks`."""

  def __init__(self, model, tasks, feature_specs):
    super().__init__(name="exported_model")
    self.model = model
    self.tasks = tuple(tasks)
    self.serve = tf.function(
        lambda features: self.model(features, tasks=self.tasks, training=False),
        input_signature=[dict(feature_specs)])


def export_model(export_dir, model, tasks, feature_specs, *, atomically=True):
  """Writes a SavedModel whose `serving_default` maps features {name: TensorSpec} to
  {task: predictions} for `tasks`; `atomically` as export_tagger's."""
  module = ExportedModel(model, tasks, feature_specs)
  return (save_atomically if atomically else save)(
      module, {"serving_default": module.serve}, export_dir)
