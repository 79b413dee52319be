"""Tagging with a trained tagger: predict tag strings for sentences, and score them.

`TagPredictor` runs the model over an evaluation pipeline (bucketed, order restored by the
`index` feature) and returns, per task, one tuple of tag strings per sentence. `evaluate`
scores them against the gold tags with mtlcore.metrics: POS token accuracy and conlleval's
chunk precision, recall and F1 (percentages).
"""

import numpy as np
import tensorflow as tf

from mtlcore import metrics as metrics_lib
from mtlcore.data import pipeline


class TagPredictor:
  """Predicts tags for lists of Sentence with a MultiTaskModel of token-classification heads."""

  def __init__(self, model, featurizer, vocabularies, *, tasks, batch_size=128,
               buckets=pipeline.DEFAULT_BUCKETS):
    self.model = model
    self.featurizer = featurizer
    self.vocabularies = vocabularies
    self.tasks = tuple(tasks)
    self.batch_size = batch_size
    self.buckets = buckets
    self._predict = tf.function(self._predict_ids, reduce_retracing=True)

  def _predict_ids(self, features):
    outputs = self.model(features, tasks=self.tasks, training=False)
    return {t: self.model.heads[t].decode(outputs[t], features["length"]) for t in self.tasks}

  def predict(self, sentences):
    """{task: [tuple of tag strings per sentence]}, in the order of `sentences`."""
    dataset = pipeline.eval_dataset(sentences, featurizer=self.featurizer,
                                    vocabularies=self.vocabularies, tasks=(),
                                    batch_size=self.batch_size, buckets=self.buckets)
    out = {t: [None] * len(sentences) for t in self.tasks}
    tag_names = {t: np.array(self.vocabularies.tags[t], dtype=object) for t in self.tasks}
    for features, _ in dataset:
      ids = self._predict(features)
      index, length = features["index"].numpy(), features["length"].numpy()
      for t in self.tasks:
        rows = ids[t].numpy()
        for row, i, n in zip(rows, index, length):
          out[t][i] = tuple(tag_names[t][row[:n]])
    return out


def score(sentences, predictions):
  """Flat metrics (percentages) of predictions {task: tags per sentence} against gold.

  Returns, for the tasks present: pos/accuracy; chunk/precision, chunk/recall, chunk/f1
  (conlleval), chunk/accuracy (token level) and chunk_f1_by_type/TYPE per chunk type.
  """
  result = {}
  if "pos" in predictions:
    result["pos/accuracy"] = metrics_lib.token_accuracy([s.pos for s in sentences],
                                                        predictions["pos"])
  if "chunk" in predictions:
    gold = [s.chunks for s in sentences]
    scores = metrics_lib.chunk_scores(gold, predictions["chunk"])
    for key in ("precision", "recall", "f1"):
      result[f"chunk/{key}"] = scores["overall"][key]
    result["chunk/accuracy"] = metrics_lib.token_accuracy(gold, predictions["chunk"])
    for chunk_type, s in scores["by_type"].items():
      result[f"chunk_f1_by_type/{chunk_type}"] = s["f1"]
  return result
