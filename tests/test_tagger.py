"""Tests of the CoNLL-2000 tagger network trained in-process on synthetic data."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.tagging import pipeline
from mtlcore.tagging.conll2000 import parse_conll
from mtlcore.tagging.vocab import Featurizer, Vocabularies
from mtlcore.errors import ConfigError
from mtlcore.tagging import tagger
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from tests import fixtures
from mtlcore.trainers import AlternatingTrainer, JointTrainer

SMALL = dict(word_dim=16, char_dim=8, char_filters=8, hidden_size=16)
BUCKETS = (12, 24, 36)


def _setup(config, seed=0):
  sentences = parse_conll(fixtures.conll_text(fixtures.synthetic_sentences(64, seed=seed))
                          .encode())
  vocab = Vocabularies.build(sentences, ("pos", "chunk"), min_word_count=1)
  featurizer = Featurizer(vocab)
  model = tagger.build_tagger(config, num_words=featurizer.num_words,
                              num_chars=featurizer.num_chars,
                              num_tags={t: len(vocab.tags[t]) for t in ("pos", "chunk")},
                              seed=seed)

  def stream(tasks, stream_seed):
    return pipeline.training_dataset(sentences, featurizer=featurizer, vocabularies=vocab,
                                     tasks=tasks, batch_size=8, seed=stream_seed, buckets=BUCKETS)

  return model, stream


def _joint(config, jit_compile):
  model, stream = _setup(config)
  return JointTrainer(model=model, tasks=tagger.tagging_tasks(model, ("pos", "chunk")),
                      optimizer=Adam(1e-2), dataset=stream(("pos", "chunk"), 0),
                      jit_compile=jit_compile, clip_norm=5.0)


@pytest.mark.parametrize("trunk, crf", [("bilstm", True), ("conv", False)])
def test_xla_and_plain_tagger_steps_agree_with_dropout_on(trunk, crf):
  config = tagger.TaggerConfig(trunk=trunk, dropout=0.3, crf=("chunk",) if crf else (),
                               **SMALL)
  compiled, plain = _joint(config, True), _joint(config, False)
  features, labels = next(iter(plain._inputs.makers["joint"](0)))
  seed = plain.step_seed()

  def gradients(features, labels):
    with tf.GradientTape() as tape:
      total, _, _ = plain.weighted_losses(features, labels, training=True, seed=seed)
    return [tf.convert_to_tensor(g)
            for g in tape.gradient(total, plain.model.trainable_variables)]

  for a, b, v in zip(gradients(features, labels),
                     tf.function(gradients, jit_compile=True)(features, labels),
                     plain.model.trainable_variables):
    np.testing.assert_allclose(a, b, atol=1e-6, err_msg=v.name)
  compiled.train(3)
  plain.train(3)
  # Adam's first update is lr g / (|g| + 1e-7): where a gradient is itself ~1e-7 (e.g. a head
  # weight whose inputs nearly cancel), a 1e-8 rounding difference between XLA's and
  # TensorFlow's kernels moves the weight by ~1e-5 of lr = 1e-2's ~1e-2 step; 1e-4 holds that.
  for a, b in zip(compiled.model.trainable_variables, plain.model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-4, err_msg=a.name)


def test_a_pos_step_reading_the_first_layer_leaves_the_top_layer_and_chunk_head_untouched():
  model, stream = _setup(tagger.TaggerConfig(reads={"pos": 1}, **SMALL))
  tasks = tagger.tagging_tasks(model, ("pos", "chunk"))
  trainer = AlternatingTrainer(
      model=model, tasks=tasks, optimizers={"pos": Adam(1e-2), "chunk": Adam(1e-2)},
      datasets={"pos": stream(("pos",), 1), "chunk": stream(("chunk",), 2)},
      sampler=TaskSampler(["pos", "chunk"], [1.0, 0.0], seed=0))
  top = model.trunk.layers[-1].trainable_variables + model.heads["chunk"].trainable_variables
  lower = model.trunk.layers[0].trainable_variables
  before_top, before_lower = [v.numpy().copy() for v in top], [v.numpy().copy() for v in lower]
  trainer.train(5)
  for b, v in zip(before_top, top):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.name)
  assert all(not np.array_equal(b, v.numpy()) for b, v in zip(before_lower, lower))


def test_tagger_config_rejects_bad_sizes():
  with pytest.raises(ConfigError, match="num_layers must be at least 2"):
    tagger.TaggerConfig(num_layers=1)
  with pytest.raises(ConfigError, match="hidden_size must be a positive integer"):
    tagger.TaggerConfig(hidden_size=0)
  with pytest.raises(ConfigError, match="trunk must be one of"):
    tagger.TaggerConfig(trunk="transformer")
