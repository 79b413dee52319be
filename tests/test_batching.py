"""The data position: epoch plans are a function of (seed, epoch), so a stream rebuilt at batch k
is the stream that had k batches taken, and a checkpoint holds no data."""

import numpy as np
import pytest

from mtlcore import batching
from mtlcore.tagging import pipeline
from mtlcore.tagging.columns import TaggedSentence
from mtlcore.toy.data import toy_dataset
from mtlcore.tagging.vocab import Featurizer, Vocabularies
from mtlcore.errors import ConfigError


@pytest.mark.parametrize("n, batch", [(10, 3), (9, 3), (2, 5), (1, 4)])
def test_an_epoch_is_every_example_once_plus_a_wrap_around_fill(n, batch):
  plan = batching.epoch_batches(n, batch_size=batch, seed=0, epoch=0)
  assert len(plan) == batching.num_batches(n, batch) == -(-n // batch)
  flat = np.concatenate([i for _, i in plan])
  assert len(flat) == len(plan) * batch and set(flat.tolist()) == set(range(n))
  counts = np.bincount(flat, minlength=n)
  assert counts.min() >= 1 and counts.sum() - n == len(plan) * batch - n


def test_buckets_hold_examples_that_fit_and_remainders_move_up():
  lengths = np.random.default_rng(0).integers(1, 40, size=101)
  plan = batching.epoch_batches(101, batch_size=8, seed=1, epoch=2, lengths=lengths,
                                buckets=(10, 20, 40))
  assert len(plan) == 13
  for pad, index in plan:
    assert pad in (10, 20, 40) and lengths[index].max() <= pad
  assert set(np.concatenate([i for _, i in plan]).tolist()) == set(range(101))
  with pytest.raises(ConfigError, match="longer than the largest bucket"):
    batching.epoch_batches(3, batch_size=2, seed=0, epoch=0, lengths=[1, 2, 50], buckets=(10,))


def test_epochs_differ_and_are_reproducible():
  a = batching.epoch_batches(50, batch_size=5, seed=3, epoch=0)
  b = batching.epoch_batches(50, batch_size=5, seed=3, epoch=1)
  again = batching.epoch_batches(50, batch_size=5, seed=3, epoch=0)
  assert [i.tolist() for _, i in a] == [i.tolist() for _, i in again]
  assert [i.tolist() for _, i in a] != [i.tolist() for _, i in b]


def _corpus(n):
  rng = np.random.default_rng(0)
  out = []
  for k in range(n):
    m = int(rng.integers(1, 30))
    out.append(TaggedSentence(tuple(f"w{(k + j) % 17}" for j in range(m)),
                              {"pos": ("NN",) * m}))
  return out


@pytest.mark.parametrize("start", [0, 1, 7, 13, 40])
def test_a_tagging_stream_rebuilt_at_batch_k_is_the_stream_after_k_batches(start):
  sentences = _corpus(45)
  vocab = Vocabularies.build(sentences, ("pos",), min_word_count=1)
  make = lambda s: pipeline.training_dataset(
      sentences, featurizer=Featurizer(vocab), vocabularies=vocab, tasks=("pos",),
      batch_size=4, seed=5, buckets=(8, 16, 32), start=s)
  assert pipeline.steps_per_epoch(sentences, batch_size=4, buckets=(8, 16, 32)) == 12
  whole = list(make(0).take(start + 6))[start:]
  rebuilt = list(make(start).take(6))
  for (f1, l1), (f2, l2) in zip(whole, rebuilt):
    for key in f1:
      np.testing.assert_array_equal(f1[key], f2[key])
    np.testing.assert_array_equal(l1["pos"], l2["pos"])


def test_a_toy_stream_rebuilt_at_batch_k_is_the_stream_after_k_batches():
  whole = [f["x"].numpy() for f, _ in toy_dataset(50, batch_size=8, seed=2).take(20)]
  rebuilt = [f["x"].numpy() for f, _ in toy_dataset(50, batch_size=8, seed=2, start=9).take(11)]
  np.testing.assert_array_equal(np.stack(whole[9:]), np.stack(rebuilt))


@pytest.mark.parametrize("start", [0, 7, 23])
def test_a_plan_stream_gives_each_epochs_batches_in_order_from_any_start(start):
  """plan_dataset's batch k is batch k mod n of epoch k // n: what the generator it replaced
  gave (the data order of earlier checkpoints is kept)."""
  n, size = 5, 4
  plan = lambda epoch: [(epoch, np.arange(size) + 10 * i + 100 * epoch) for i in range(n)]
  stream = batching.plan_dataset(plan, steps_per_epoch=n, batch_size=size, start=start)
  got = [(int(p), i.numpy().tolist()) for p, i in stream.take(12)]
  want = [(k // n, (np.arange(size) + 10 * (k % n) + 100 * (k // n)).tolist())
          for k in range(start, start + 12)]
  assert got == want
