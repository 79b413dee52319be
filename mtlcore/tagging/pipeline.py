"""tf.data pipelines for sequence tagging: featurise in-graph, bucket by length, pad.

Batches are ({"words": int32 [B, T], "chars": int32 [B, T, C], "length": int32 [B],
"index": int32 [B]}, {task: int32 [B, T]; sentence task: int32 [B]}), where T is one of a
small fixed set of bucket lengths, so XLA compiles at most one program per (task, bucket).
Label ids at padded positions are 0 and must be masked by length; a missing label is
MISSING (-1).

Training streams are endless, each epoch in an order drawn from (seed, epoch) alone
(mtlcore.batching), so a stream can be rebuilt at any batch; a sentence longer than the
largest bucket is split into pieces of at most that length (never dropped). Evaluation
streams keep every sentence whole: one longer than the largest bucket is padded to a multiple
of it, and `index` tells where each row came from.
"""

import functools
import math

import numpy as np
import tensorflow as tf

from mtlcore import batching
from mtlcore.errors import ConfigError, require_positive
from mtlcore.tagging.options import DEFAULT_BUCKETS



def check_buckets(buckets):
  buckets = tuple(buckets)
  if not buckets or any(not isinstance(b, int) or b <= 0 for b in buckets) or (
      list(buckets) != sorted(set(buckets))):
    raise ConfigError(f"Bucket lengths must be increasing positive integers, got {buckets}.")
  return buckets


def split_long(sentences, max_length):
  """Splits each sentence longer than max_length into consecutive pieces of at most it."""
  out = []
  for s in sentences:
    if len(s) <= max_length:
      out.append(s)
      continue
    out += [s.piece(start, start + max_length) for start in range(0, len(s), max_length)]
  return out


def _ragged(rows, dtype):
  lengths = [len(r) for r in rows]
  flat = [x for r in rows for x in r]
  return tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype=dtype),
                                          tf.constant(lengths, tf.int64))


def _columns(sentences, vocabularies, tasks, sentence_tasks=()):
  """{"tokens": ragged string [N, None], task: ragged int32 label ids [N, None], sentence
  task: int32 label id [N] (MISSING where the sentence has none)}."""
  columns = {"tokens": _ragged([s.words for s in sentences], tf.string)}
  for task in tasks:
    if task in sentence_tasks:
      columns[task] = tf.constant(
          [vocabularies.tag_ids(task, [s.sentence_labels.get(task)])[0] for s in sentences],
          tf.int32, shape=[len(sentences)])
    else:
      columns[task] = _ragged([vocabularies.tag_ids(task, s.labels(task)) for s in sentences],
                              tf.int32)
  return columns


def _base_dataset(sentences, vocabularies, tasks, sentence_tasks=()):
  columns = _columns(sentences, vocabularies, tasks, sentence_tasks)
  columns["index"] = tf.range(len(sentences), dtype=tf.int32)
  return tf.data.Dataset.from_tensor_slices(columns)


def _featurize(featurizer, tasks):

  def fn(row):
    features = featurizer(row["tokens"])
    features["length"] = tf.shape(row["tokens"], out_type=tf.int32)[0]
    features["index"] = row["index"]
    return features, {t: row[t] for t in tasks}

  return fn


def _bucketed(dataset, boundaries, batch_size, max_word_chars, tasks, sentence_tasks=()):
  boundaries_t = tf.constant(boundaries, tf.int32)

  def key(features, labels):
    del labels
    return tf.cast(tf.reduce_sum(tf.cast(features["length"] > boundaries_t, tf.int32)), tf.int64)

  def batch(bucket, window):
    length = tf.cast(tf.gather(boundaries_t, bucket), tf.int64)
    shapes = ({"words": tf.reshape(length, [1]), "chars": tf.stack([length, max_word_chars]),
               "length": [], "index": []},
              {t: [] if t in sentence_tasks else tf.reshape(length, [1]) for t in tasks})
    return window.padded_batch(batch_size, padded_shapes=shapes)

  return dataset.group_by_window(key_func=key, reduce_func=batch, window_size=batch_size)


def steps_per_epoch(sentences, *, batch_size, buckets=DEFAULT_BUCKETS):
  """Batches in one pass over `sentences` (long ones split as the training stream does)."""
  return batching.num_batches(len(split_long(sentences, check_buckets(buckets)[-1])),
                              batch_size)


def training_dataset(sentences, *, featurizer, vocabularies, tasks, batch_size, seed,
                     buckets=DEFAULT_BUCKETS, start=0, sentence_tasks=()):
  """An endless, shuffled, bucketed stream of full training batches, from batch `start` on.

  Args:
    sentences: list of mtlcore.tagging.columns.TaggedSentence.
    featurizer: mtlcore.tagging.vocab.Featurizer.
    vocabularies: mtlcore.tagging.vocab.Vocabularies (for tag ids).
    tasks: task names whose labels the batches carry (MISSING where a sentence has none).
    batch_size: sentences per batch.
    seed: each epoch's order is drawn from (seed, epoch) (mtlcore.batching), the same
      way on every run.
    buckets: increasing pad lengths.
    start: the first batch, counted from the stream's beginning across epochs; the stream
      from `start` on is exactly what it would be after `start` batches.
    sentence_tasks: the tasks of `tasks` labelled per sentence (labels int32 [B]); a
      sentence split into pieces gives each piece its label.
  """
  require_positive("batch_size", batch_size)
  buckets = check_buckets(buckets)
  pieces = split_long(sentences, buckets[-1])
  if not pieces:
    raise ConfigError("A training stream needs at least one sentence.")
  plan = functools.partial(batching.epoch_batches, len(pieces), batch_size=batch_size,
                           seed=seed, lengths=[len(p) for p in pieces], buckets=buckets)
  columns = _columns(pieces, vocabularies, tasks, sentence_tasks)

  def make_batch(length, index):
    tokens = tf.gather(columns["tokens"], index)
    shape = tf.stack([batch_size, length])
    features = featurizer(tokens.to_tensor(default_value="", shape=shape))
    features["length"] = tf.cast(tokens.row_lengths(), tf.int32)
    features["index"] = index
    labels = {t: tf.gather(columns[t], index) if t in sentence_tasks
              else tf.gather(columns[t], index).to_tensor(default_value=0, shape=shape)
              for t in tasks}
    return features, labels

  dataset = batching.plan_dataset(lambda epoch: plan(epoch=epoch),
                                  steps_per_epoch=batching.num_batches(len(pieces), batch_size),
                                  batch_size=batch_size, start=start)
  return dataset.map(make_batch, num_parallel_calls=tf.data.AUTOTUNE,
                     deterministic=True).prefetch(tf.data.AUTOTUNE)


def eval_boundaries(sentences, buckets=DEFAULT_BUCKETS):
  """The buckets, extended by multiples of the largest to fit the longest sentence."""
  buckets = check_buckets(buckets)
  longest = max((len(s) for s in sentences), default=1)
  extra = [buckets[-1] * k for k in range(2, math.ceil(longest / buckets[-1]) + 1)]
  return buckets + tuple(extra)


def eval_dataset(sentences, *, featurizer, vocabularies, tasks, batch_size,
                 buckets=DEFAULT_BUCKETS, sentence_tasks=()):
  """One pass over `sentences` in batches of similar length; `index` maps rows back."""
  require_positive("batch_size", batch_size)
  order = np.argsort([len(s) for s in sentences], kind="stable")
  by_length = [sentences[i] for i in order]
  dataset = _base_dataset(by_length, vocabularies, tasks, sentence_tasks)
  original = tf.constant(order, tf.int32)
  dataset = dataset.map(lambda row: dict(row, index=tf.gather(original, row["index"])))
  dataset = dataset.map(_featurize(featurizer, tasks), num_parallel_calls=tf.data.AUTOTUNE)
  dataset = _bucketed(dataset, eval_boundaries(sentences, buckets), batch_size,
                      featurizer.max_word_chars, tasks, sentence_tasks)
  return dataset.prefetch(tf.data.AUTOTUNE)
