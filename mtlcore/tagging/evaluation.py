"""Tagging with a trained tagger: predict tag strings for sentences, and score them.

`TagPredictor` runs the model over an evaluation pipeline (bucketed, order restored by the
`index` feature) and returns, per task, one tuple of tag strings per sentence (for a sentence
task, one label string per sentence). `score` scores
them against the gold tags with mtlcore.tagging.conlleval: token accuracy for every task, and conlleval's
span precision, recall and F1 (percentages) for span tasks.
"""

import numpy as np
import tensorflow as tf

from mtlcore import metrics
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
    self._predict = tf.function(self._predict_ids, reduce_retracing=True, autograph=False)

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


def span_type(tag):
  """The chunk type of a span tag ('B-NP' -> 'NP'; 'O' -> None)."""
  return tag.partition("-")[2] or None


class DecodedScores(metrics.Metric):
  """A tagging task's held-out scores as summable statistics (an evaluation-only metric,
  mtlcore.tasks.Task.eval_metrics): token accuracy and, for a span task, conlleval's chunk
  counts per type, of the head's decoded tags (Viterbi for a CRF, else argmax).

  The head decodes inside the evaluation's function; the counting runs on the host
  (tf.numpy_function) against the gold tag strings of `sentences` (the corpus being
  evaluated, set before each pass; a batch row finds its sentence by the `index` feature), so
  a gold tag never seen in training counts with its own type, exactly as conlleval counts it.
  Statistics: [correct tokens, labelled tokens, then per type of `types`: correct, guessed
  and gold chunks]; only sentences fully labelled for the task enter the chunk counts
  (conlleval needs whole sentences), every labelled token the accuracy. `result` gives
  TASK/accuracy and, for a span task, TASK/precision, TASK/recall, TASK/f1 and
  TASK_f1_by_type/TYPE for each type with a gold or guessed chunk: percentages, equal to
  `score`'s.
  """

  def __init__(self, task, head, tag_names, *, span, types=()):
    self.task, self.head, self.span = task, head, span
    self.tag_names = np.array(tag_names, dtype=object)
    self.types = tuple(sorted(types)) if span else ()
    self._type_index = {t: i for i, t in enumerate(self.types)}
    self.size = 2 + 3 * len(self.types)
    self.sentences = None

  def statistics(self, labels, predictions, features):
    del labels  # The gold strings come from the sentences (unseen tags keep their type).
    ids = self.head.decode(predictions, features["length"])
    counts = tf.numpy_function(self._count, [features["index"], ids, features["length"]],
                               tf.float32, stateful=True)
    return tf.ensure_shape(counts, [self.size])

  def _count(self, index, ids, lengths):
    out = np.zeros([self.size], np.float32)
    for i, row, n in zip(index, ids, lengths):
      sentence = self.sentences[i]
      gold, predicted = sentence.labels(self.task), self.tag_names[row[:n]]
      labelled = [(g, p) for g, p in zip(gold, predicted) if g is not None]
      out[0] += sum(g == p for g, p in labelled)
      out[1] += len(labelled)
      if self.span and labelled and len(labelled) == len(gold):
        gold_spans, predicted_spans = conlleval.chunk_spans(gold), conlleval.chunk_spans(
            list(predicted))
        for column, spans in ((0, gold_spans & predicted_spans), (1, predicted_spans),
                              (2, gold_spans)):
          for span in spans:
            out[2 + 3 * self._type_index[span[2]] + column] += 1
    return out

  def result(self, sums):
    correct, total = float(sums[0]), float(sums[1])
    out = {f"{self.task}/accuracy": 100.0 * correct / total if total else 0.0}
    if self.span:
      by_type = np.asarray(sums[2:], np.float64).reshape(-1, 3).astype(np.int64)
      overall = conlleval.prf(*(int(x) for x in by_type.sum(0)))
      out.update({f"{self.task}/{k}": overall[k] for k in ("precision", "recall", "f1")})
      for span_type_name, counts in zip(self.types, by_type):
        if counts[1] or counts[2]:
          out[f"{self.task}_f1_by_type/{span_type_name}"] = conlleval.prf(*map(int, counts))["f1"]
    return out
