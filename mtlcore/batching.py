"""Epoch plans: which examples form each training batch, as a function of (seed, epoch) alone.

A training stream is endless. Epoch e is a permutation of the examples drawn from (seed, e),
cut into batches of a fixed size. Because the plan of any epoch is computed without reading
the epochs before it, a stream can start at any batch: batch number k of the stream is batch
k mod n of epoch k // n, where n is `num_batches(...)`. The position of a stream is therefore
one integer, the number of batches consumed, which the trainers already keep as step counters
in every checkpoint: no tf.data iterator state, no shuffle buffer, nothing that grows with the
corpus, and nothing a tf.distribute strategy would have to save.

With buckets (increasing pad lengths, for sequences), each example goes to the smallest bucket
its length fits, in permutation order; each bucket is cut into full batches and the remainder
is carried up into the next, longer bucket (its examples are padded longer). The remainder of
the largest bucket is completed by wrapping around to the start of the epoch's permutation
(cyclically, if the corpus is smaller than one batch), so every example is seen every epoch
and an epoch is always ceil(N / batch_size) full batches. The batches' order is shuffled too.
"""

import functools

import numpy as np
import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive


def num_batches(num_examples, batch_size):
  """Batches in one epoch: ceil(num_examples / batch_size)."""
  return -(-num_examples // batch_size)


def _rng(seed, epoch):
  return np.random.default_rng([int(seed) % 2**63, int(epoch)])


def epoch_batches(num_examples, *, batch_size, seed, epoch, lengths=None, buckets=None):
  """The batches of one epoch, in order.

  Args:
    num_examples: N > 0.
    batch_size: examples per batch.
    seed, epoch: the plan is a function of these (and of the sizes) only.
    lengths: optional int [N], each example's length (with `buckets`).
    buckets: optional increasing pad lengths; every length must be <= buckets[-1].
  Returns:
    A list of ceil(N / batch_size) pairs (pad length int, or 0 without buckets; int32
    indices [batch_size]).
  """
  require_positive("num_examples", num_examples)
  require_positive("batch_size", batch_size)
  rng = _rng(seed, epoch)
  order = rng.permutation(num_examples).astype(np.int32)
  if buckets is None:
    groups = [(0, order)]
  else:
    lengths = np.asarray(lengths)
    if lengths.max() > buckets[-1]:
      raise ConfigError(f"an example of length {lengths.max()} is longer than the largest "
                        f"bucket ({buckets[-1]}).")
    which = np.searchsorted(np.asarray(buckets), lengths[order])  # bucket index per position
    groups = [(b, order[which == i]) for i, b in enumerate(buckets)]
  batches, carried = [], np.zeros([0], np.int32)
  for pad, members in groups:
    pool = np.concatenate([carried, members])
    full = len(pool) // batch_size * batch_size
    batches += [(pad, pool[i:i + batch_size]) for i in range(0, full, batch_size)]
    carried = pool[full:]
  if len(carried):
    fill = np.resize(order, batch_size - len(carried))  # np.resize repeats cyclically.
    batches.append((groups[-1][0], np.concatenate([carried, fill]).astype(np.int32)))
  return [batches[i] for i in rng.permutation(len(batches))]


def plan_dataset(plan, *, steps_per_epoch, batch_size, start):
  """An endless tf.data.Dataset of (pad length int32 [], indices int32 [batch_size]).

  Args:
    plan: epoch -> list of (pad length, indices), e.g. a partial of epoch_batches.
    steps_per_epoch: len(plan(e)) for every e.
    batch_size: the size of every index array.
    start: the stream's position, in batches from the very first one.
  """
  if start < 0:
    raise ConfigError(f"A stream's start position must be >= 0, got {start}.")
  epoch_plan = functools.lru_cache(maxsize=2)(plan)  # Batches come in order: one epoch's.

  def batch(position):
    epoch, offset = divmod(int(position), steps_per_epoch)
    pad, indices = epoch_plan(epoch)[offset]
    return np.int32(pad), np.asarray(indices, np.int32)

  def lookup(position):
    # A function of the position, not a generator: no Python state for TensorFlow to
    # finalize at exit (a from_generator stream logs FAILED_PRECONDITION there).
    pad, indices = tf.numpy_function(batch, [position], (tf.int32, tf.int32), stateful=False)
    return tf.ensure_shape(pad, []), tf.ensure_shape(indices, [batch_size])

  return tf.data.Dataset.counter(int(start)).map(lookup)


def in_memory(tensors, *, batch_size, seed):
  """A stream over in-memory examples: (make_dataset, steps_per_epoch).

  Args:
    tensors: a nest (dicts, tuples) of arrays or tensors sharing their first dimension N, e.g.
      ({"x": x}, {"y": y}).
    batch_size: examples per batch.
    seed: each epoch's order is drawn from (seed, epoch).
  Returns:
    `make_dataset(start)`, an endless tf.data.Dataset of the nest's batches (first dimension
    batch_size) from batch `start` on, and the batches in one epoch, ceil(N / batch_size).
  """
  tensors = tf.nest.map_structure(tf.convert_to_tensor, tensors)
  num_examples = int(tf.nest.flatten(tensors)[0].shape[0])
  steps = num_batches(num_examples, batch_size)

  def make_dataset(start):
    plan = lambda epoch: epoch_batches(num_examples, batch_size=batch_size, seed=seed,
                                       epoch=epoch)
    dataset = plan_dataset(plan, steps_per_epoch=steps, batch_size=batch_size, start=start)
    gather = lambda _, index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors)
    return dataset.map(gather).prefetch(2)

  return make_dataset, steps
