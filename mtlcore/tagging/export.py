"""The tagger's SavedModel: raw string tokens in, tag strings out (what mtl-tag serves).

`ExportedTagger` (signature `serving_default`) carries the vocabularies as lookup tables and
the tag names as constants, so serving needs nothing but the export directory:
  inputs:  tokens  string [B, T]  one sentence per row, padded with "" (empty string).
  outputs: length  int32  [B]     number of tokens per row;
           TASK    string [B, T]  the predicted tag of each token, "" at padding;
           TASK    string [B]     for a sentence task, the row's predicted label.
The object's `task_order` (a string variable) lists the served tasks in the run's order.
Written with mtlcore.export's `save` / `save_atomically`.
"""

import tensorflow as tf

from mtlcore import export


class ExportedTagger(tf.Module):
  """Featurizer + model + tag names, with one serving function."""

  def __init__(self, model, featurizer, vocabularies, tasks, sentence_tasks=()):
    super().__init__(name="exported_tagger")
    self.sentence_tasks = tuple(t for t in tasks if t in sentence_tasks)
    self.model = model
    self.featurizer = featurizer
    self.tasks = tuple(tasks)
    # Saved with the model, so a reader knows the order of the task outputs.
    self.task_order = tf.Variable(list(self.tasks), trainable=False, name="task_order")
    self.tag_names = {t: tf.constant(list(vocabularies.tags[t]), tf.string) for t in self.tasks}

  @tf.function(input_signature=[tf.TensorSpec([None, None], tf.string, name="tokens")],
               autograph=False)
  def tag(self, tokens):
    length = tf.reduce_sum(tf.cast(tf.not_equal(tokens, ""), tf.int32), axis=1)
    features = self.featurizer(tokens)
    features["length"] = length
    predictions = self.model(features, tasks=self.tasks, training=False)
    mask = tf.sequence_mask(length, tf.shape(tokens)[1])
    outputs = {"length": length}
    for t in self.tasks:
      if t in self.sentence_tasks:
        outputs[t] = tf.gather(self.tag_names[t], tf.argmax(predictions[t], -1))
        continue
      ids = self.model.heads[t].decode(predictions[t], length)
      outputs[t] = tf.where(mask, tf.gather(self.tag_names[t], ids), "")
    return outputs


def export_tagger(export_dir, model, featurizer, vocabularies, tasks, *, atomically=True,
                  sentence_tasks=()):
  """Writes the tagger's SavedModel (tasks: the heads to serve; sentence_tasks: those of them
  labelled per sentence) to export_dir: staged and moved in (save_atomically), or, with
  atomically=False, into export_dir as it is (save)."""
  module = ExportedTagger(model, featurizer, vocabularies, tasks, sentence_tasks)
  return (export.save_atomically if atomically else export.save)(
      module, {"serving_default": module.tag}, export_dir)
