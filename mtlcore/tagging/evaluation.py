"""Tagging with a trained tagger: predict tag strings for sentences, and score them.

`TagPredictor` runs the model over an evaluation pipeline (bucketed, order restored by the
`index` feature) and returns, per task, one tuple of tag strings per sentence (for a sentence
task, one label string per sentence). `score` scores
them against the gold tags with mtlcore.tagging.conlleval: token accuracy for every task, and conlleval's
span precision, recall and F1 (percentages) for span tasks.
"""

import numpy as np
import tensorflow as tf

from mtlcore.tagging import conlleval
from mtlcore.tagging import pipeline


class TagPredictor:
  """Predicts tags for lists of TaggedSentence with a MultiTaskModel of token-classification heads."""

  def __init__(self, model, featurizer, vocabularies, *, tasks, batch_size=128,
               buckets=pipeline.DEFAULT_BUCKETS, sentence_tasks=()):
    self.model = model
    self.sentence_tasks = tuple(t for t in tasks if t in sentence_tasks)
    self.featurizer = featurizer
    self.vocabularies = vocabularies
    self.tasks = tuple(tasks)
    self.batch_size = batch_size
    self.buckets = buckets
    self._predict = tf.function(self._predict_ids, reduce_retracing=True)

  def _predict_ids(self, features):
    outputs = self.model(features, tasks=self.tasks, training=False)
    return {t: tf.argmax(outputs[t], -1, output_type=tf.int32) if t in self.sentence_tasks
            else self.model.heads[t].decode(outputs[t], features["length"]) for t in self.tasks}

  def predict(self, sentences):
    """{task: [tuple of tag strings per sentence]} ({sentence task: [label per sentence]}),
    in the order of `sentences`."""
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
          out[t][i] = (tag_names[t][row] if t in self.sentence_tasks
                       else tuple(tag_names[t][row[:n]]))
    return out


SPAN, ACCURACY = "span", "accuracy"
SCORINGS = (SPAN, ACCURACY)


def score(sentences, predictions, scoring):
  """Flat metrics (percentages) of predictions {task: tags per sentence} against gold.

  Args:
    sentences: the gold mtlcore.tagging.columns.TaggedSentence list.
    predictions: {task: one tuple of tags per sentence}.
    scoring: {task: "span" or "accuracy"}.
  Returns, per task T: T/accuracy over T's labelled tokens; for a span task also conlleval's
  T/precision, T/recall, T/f1 and T_f1_by_type/TYPE, over the sentences fully labelled for T
  (conlleval needs whole sentences).
  """
  result = {}
  for task, predicted in predictions.items():
    pairs = [(s.labels(task), p) for s, p in zip(sentences, predicted, strict=True)]
    labelled = [[(g, q) for g, q in zip(gold, pred, strict=True) if g is not None]
                for gold, pred in pairs]
    result[f"{task}/accuracy"] = conlleval.token_accuracy(
        [[g for g, _ in row] for row in labelled], [[q for _, q in row] for row in labelled])
    if scoring[task] == SPAN:
      full = [(gold, pred) for gold, pred in pairs if None not in gold]
      scores = conlleval.chunk_scores([g for g, _ in full], [p for _, p in full])
      for key in ("precision", "recall", "f1"):
        result[f"{task}/{key}"] = scores["overall"][key]
      for span_type, s in scores["by_type"].items():
        result[f"{task}_f1_by_type/{span_type}"] = s["f1"]
  return result
