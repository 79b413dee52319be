"""Tests of mtlcore.tagging.vocab and mtlcore.tagging.pipeline."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.tagging import pipeline
from mtlcore.tagging.columns import TaggedSentence
from mtlcore.tagging.vocab import PAD, UNK, Featurizer, Vocabularies, normalize_word
from mtlcore.errors import ConfigError


def _sentence(words, pos=None, chunks=None):
  n = len(words)
  return TaggedSentence(tuple(words), {"pos": tuple(pos or ["NN"] * n),
                                        "chunk": tuple(chunks or ["B-NP"] * n)})


def test_vocabularies_keep_frequent_normalised_words_and_all_tags():
  train = [_sentence(["The", "the", "1999", "2001", "rare"], ["DT", "DT", "CD", "CD", "JJ"],
                     ["B-NP", "I-NP", "I-NP", "I-NP", "O"])]
  vocab = Vocabularies.build(train, ("pos", "chunk"), min_word_count=2)
  assert vocab.words == ("0000", "the")
  assert normalize_word("Année-2024") == "année-0000"
  assert vocab.tags["pos"] == ("CD", "DT", "JJ")
  assert vocab.tag_ids("chunk", ["O", "I-LST"]) == [2, 3]  # Unseen tag -> len(tags).


def test_vocabularies_round_trip_through_json(tmp_path):
  vocab = Vocabularies.build([_sentence(["Zürich", "Zürich", "naïve"])], ("pos", "chunk"), min_word_count=1)
  vocab.save(tmp_path / "v.json")
  assert Vocabularies.load(tmp_path / "v.json") == vocab


def test_featurizer_maps_words_chars_and_padding():
  vocab = Vocabularies.build([_sentence(["Dogs", "dogs", "bark"])], ("pos", "chunk"), min_word_count=2)
  featurizer = Featurizer(vocab, max_word_chars=4)
  out = featurizer(tf.constant([["DOGS", "cats", "Barking", ""]]))
  words, chars = out["words"].numpy()[0], out["chars"].numpy()[0]
  assert words[0] == 2 + vocab.words.index("dogs")
  assert list(words[1:]) == [UNK, UNK, PAD]
  char_id = {c: 2 + i for i, c in enumerate(vocab.chars)}
  assert list(chars[2]) == [UNK, char_id["a"], char_id["r"], char_id["k"]]  # 4 of 7 kept.
  assert list(chars[0]) == [char_id["D"], UNK, UNK, UNK]  # Characters keep their case.
  assert list(chars[3]) == [PAD] * 4


def _corpus(lengths):
  return [_sentence([f"w{i}" for i in range(n)], ["NN"] * n, ["B-NP"] + ["I-NP"] * (n - 1))
          for n in lengths]


def test_training_batches_use_bucket_lengths_and_split_long_sentences():
  sentences = _corpus([3, 5, 9, 30, 4, 7])
  vocab = Vocabularies.build(sentences, ("pos", "chunk"), min_word_count=1)
  dataset = pipeline.training_dataset(sentences, featurizer=Featurizer(vocab),
                                      vocabularies=vocab, tasks=("pos", "chunk"), batch_size=2,
                                      seed=0, buckets=(4, 8, 10))
  seen_tokens = 0
  for features, labels in dataset.take(40):
    width = features["words"].shape[1]
    assert width in (4, 8, 10) and features["words"].shape[0] == 2
    assert np.all(features["length"].numpy() <= width)
    assert labels["chunk"].shape == features["words"].shape
    seen_tokens += int(features["length"].numpy().sum())
  assert seen_tokens > 0
  pieces = pipeline.split_long(sentences, 10)
  assert sorted(len(p) for p in pieces) == [3, 4, 5, 7, 9, 10, 10, 10]
  assert sum(len(p) for p in pieces) == sum(len(s) for s in sentences)


def test_training_stream_is_a_function_of_its_seed():
  sentences = _corpus(range(1, 30))
  vocab = Vocabularies.build(sentences, ("pos", "chunk"), min_word_count=1)

  def first_batches(seed):
    dataset = pipeline.training_dataset(sentences, featurizer=Featurizer(vocab),
                                        vocabularies=vocab, tasks=("pos",), batch_size=3,
                                        seed=seed, buckets=(8, 16, 32))
    return [f["index"].numpy().tolist() for f, _ in dataset.take(6)]

  assert first_batches(0) == first_batches(0)
  assert first_batches(0) != first_batches(1)


def test_eval_stream_keeps_every_sentence_whole_and_indexed():
  sentences = _corpus([3, 12, 1, 25, 8])
  vocab = Vocabularies.build(sentences, ("pos", "chunk"), min_word_count=1)
  dataset = pipeline.eval_dataset(sentences, featurizer=Featurizer(vocab), vocabularies=vocab,
                                  tasks=("chunk",), batch_size=2, buckets=(4, 10))
  seen = {}
  for features, _ in dataset:
    for i, n in zip(features["index"].numpy(), features["length"].numpy()):
      seen[int(i)] = int(n)
    assert features["words"].shape[1] in (4, 10, 20, 30)
  assert seen == {i: len(s) for i, s in enumerate(sentences)}


@pytest.mark.parametrize("buckets", [(), (8, 4), (0, 4), (4, 4)])
def test_bad_buckets_are_rejected(buckets):
  with pytest.raises(ConfigError, match="Bucket lengths"):
    pipeline.check_buckets(buckets)
