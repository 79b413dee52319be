"""Export a trained tagger as a SavedModel that tags raw string tokens.

The SavedModel carries the vocabularies as lookup tables and the tag names as constants, so
serving needs nothing but the export directory. Signature `serving_default`:
  inputs:  tokens  string [B, T]  one sentence per row, padded with "" (empty string).
  outputs: length  int32  [B]     number of tokens per row;
           TASK    string [B, T]  the predicted tag of each token, "" at padding.
"""

import os
import shutil
import tempfile

import tensorflow as tf

from mtlcore.errors import ConfigError


class ExportedTagger(tf.Module):
  """Featurizer + model + tag names, with one serving function."""

  def __init__(self, model, featurizer, vocabularies, tasks):
    super().__init__(name="exported_tagger")
    self.model = model
    self.featurizer = featurizer
    self.tasks = tuple(tasks)
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


def export_tagger(export_dir, model, featurizer, vocabularies, tasks):
  """Writes the SavedModel to export_dir, replacing what was there only once it is complete."""
  parent = os.path.dirname(os.path.abspath(export_dir)) or "."
  try:
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".export-")
  except OSError as e:
    raise ConfigError(f"--export_dir={export_dir}: cannot write there ({e.strerror}).") from None
  module = ExportedTagger(model, featurizer, vocabularies, tasks)
  tf.saved_model.save(module, staging, signatures={"serving_default": module.tag})
  if os.path.exists(export_dir):
    old = staging + ".old"
    os.replace(export_dir, old)
    os.replace(staging, export_dir)
    shutil.rmtree(old)
  else:
    os.replace(staging, export_dir)
  return export_dir
