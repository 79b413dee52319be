"""tf.data pipelines for sequence tagging: featurise in-graph, bucket by length, pad.

Batches are ({"words": int32 [B, T], "chars": int32 [B, T, C], "length": int32 [B],
"index": int32 [B]}, {task: int32 [B, T]}), where T is one of a small fixed set of bucket
lengths, so XLA compiles at most one program per (task, bucket). Label ids at padded positions
are 0 and must be masked by length.

Training streams are endless and reshuffled every epoch from a seed; a sentence longer than
the largest bucket is split into pieces of at most that length (never dropped). Evaluation
streams keep every sentence whole: one longer than the largest bucket is padded to a multiple
of it, and `index` tells where each row came from.
"""

import math

import numpy as np
import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive

DEFAULT_BUCKETS = (12, 24, 36, 52, 80)


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
    for start in range(0, len(s), max_length):
      stop = start + max_length
      out.append(type(s)(s.words[start:stop], s.pos[start:stop], s.chunks[start:stop]))
  return out


def _ragged(rows, dtype):
  lengths = [len(r) for r in rows]
  flat = [x for r in rows for x in r]
  return tf.RaggedTensor.from_row_lengths(tf.constant(flat, dtype=dtype),
                                          tf.constant(lengths, tf.int64))


def _base_dataset(sentences, vocabularies, tasks):
  columns = {"tokens": _ragged([s.words for s in sentences], tf.string),
             "index": tf.range(len(sentences), dtype=tf.int32)}
  for task in tasks:
    tags = [s.pos if task == "pos" else s.chunks for s in sentences]
    columns[task] = _ragged([vocabularies.tag_ids(task, t) for t in tags], tf.int32)
  return tf.data.Dataset.from_tensor_slices(columns)


def _featurize(featurizer, tasks):

  def fn(row):
    features = featurizer(row["tokens"])
    features["length"] = tf.shape(row["tokens"], out_type=tf.int32)[0]
    features["index"] = row["index"]
    return features, {t: row[t] for t in tasks}

  return fn


def _bucketed(dataset, boundaries, batch_size, max_word_chars, tasks, drop_remainder):
  boundaries_t = tf.constant(boundaries, tf.int32)

  def key(features, labels):
    del labels
    return tf.cast(tf.reduce_sum(tf.cast(features["length"] > boundaries_t, tf.int32)), tf.int64)

  def batch(bucket, window):
    length = tf.cast(tf.gather(boundaries_t, bucket), tf.int64)
    shapes = ({"words": tf.reshape(length, [1]), "chars": tf.stack([length, max_word_chars]),
               "length": [], "index": []}, {t: tf.reshape(length, [1]) for t in tasks})
    return window.padded_batch(batch_size, padded_shapes=shapes, drop_remainder=drop_remainder)

  return dataset.group_by_window(key_func=key, reduce_func=batch, window_size=batch_size)


def training_dataset(sentences, *, featurizer, vocabularies, tasks, batch_size, seed,
                     buckets=DEFAULT_BUCKETS):
  """An endless, shuffled, bucketed stream of full training batches.

  Args:
    sentences: list of mtlcore.data.conll2000.Sentence.
    featurizer: mtlcore.data.vocab.Featurizer.
    vocabularies: mtlcore.data.vocab.Vocabularies (for tag ids).
    tasks: task names whose labels the batches carry ("pos", "chunk").
    batch_size: sentences per batch.
    seed: shuffling seed; each epoch is reshuffled, the same way on every run.
    buckets: increasing pad lengths.
  """
  require_positive("batch_size", batch_size)
  buckets = check_buckets(buckets)
  pieces = split_long(sentences, buckets[-1])
  dataset = (_base_dataset(pieces, vocabularies, tasks)
             .shuffle(len(pieces), seed=seed, reshuffle_each_iteration=True)
             .repeat()
             .map(_featurize(featurizer, tasks), num_parallel_calls=tf.data.AUTOTUNE,
                  deterministic=True))
  dataset = _bucketed(dataset, buckets, batch_size, featurizer.max_word_chars, tasks,
                      drop_remainder=True)
  return dataset.prefetch(tf.data.AUTOTUNE)


def eval_boundaries(sentences, buckets=DEFAULT_BUCKETS):
  """The buckets, extended by multiples of the largest to fit the longest sentence."""
  buckets = check_buckets(buckets)
  longest = max((len(s) for s in sentences), default=1)
  extra = [buckets[-1] * k for k in range(2, math.ceil(longest / buckets[-1]) + 1)]
  return buckets + tuple(extra)


def eval_dataset(sentences, *, featurizer, vocabularies, tasks, batch_size,
                 buckets=DEFAULT_BUCKETS):
  """One pass over `sentences` in batches of similar length; `index` maps rows back."""
  require_positive("batch_size", batch_size)
  order = np.argsort([len(s) for s in sentences], kind="stable")
  by_length = [sentences[i] for i in order]
  dataset = _base_dataset(by_length, vocabularies, tasks)
  original = tf.constant(order, tf.int32)
  dataset = dataset.map(lambda row: dict(row, index=tf.gather(original, row["index"])))
  dataset = dataset.map(_featurize(featurizer, tasks), num_parallel_calls=tf.data.AUTOTUNE)
  dataset = _bucketed(dataset, eval_boundaries(sentences, buckets), batch_size,
                      featurizer.max_word_chars, tasks, drop_remainder=False)
  return dataset.prefetch(tf.data.AUTOTUNE)
