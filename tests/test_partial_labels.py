"""Partial labels: a missing label (id < 0) adds no loss, no gradient and no metric; a CRF
trains on the marginal likelihood of the paths through the known tags; in a joint batch where
a task has no label at all, its head and its optimizer slots stay bitwise unchanged."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import losses
from mtlcore.tagging import pipeline
from mtlcore.tagging.conll2000 import parse_conll
from mtlcore.tagging.vocab import Featurizer, Vocabularies
from mtlcore.tagging import crf
from mtlcore.tagging import tagger
from mtlcore.optimizers import Adam
from mtlcore.trainers import JointTrainer
from tests import fixtures


def _problem(seed, batch=4, steps=4, tags=3):
  rng = np.random.default_rng(seed)
  f = lambda *s: rng.normal(size=s).astype(np.float32)
  return (f(batch, steps, tags), f(tags, tags), f(tags), f(tags),
          rng.integers(0, tags, size=(batch, steps)).astype(np.int32),
          rng.random((batch, steps)) < 0.5)


def _brute_force(e, tags, known, n, trans, start, end):
  """log sum over paths agreeing with the known tags of exp(score), minus log Z."""
  def score(path):
    return (start[path[0]] + end[path[-1]] + sum(e[t, k] for t, k in enumerate(path))
            + sum(trans[a, b] for a, b in zip(path, path[1:])))
  paths = list(itertools.product(range(e.shape[1]), repeat=n))
  agree = [p for p in paths if all(p[t] == tags[t] for t in range(n) if known[t])]
  return (np.logaddexp.reduce([score(p) for p in agree])
          - np.logaddexp.reduce([score(p) for p in paths]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginal_log_likelihood_matches_brute_force(seed):
  emissions, trans, start, end, tags, known = _problem(seed)
  lengths = np.array([4, 3, 2, 1], np.int32)
  got = crf.crf_marginal_log_likelihood(emissions, tags, known, lengths, trans, start,
                                        end).numpy()
  for b, n in enumerate(lengths):
    want = _brute_force(emissions[b], tags[b], known[b], n, trans, start, end)
    np.testing.assert_allclose(got[b], want, rtol=1e-5, atol=1e-5)


def test_marginal_with_all_or_no_tags_known_is_the_likelihood_or_zero():
  emissions, trans, start, end, tags, _ = _problem(3)
  lengths = np.array([4, 3, 2, 1], np.int32)
  everything = np.ones_like(tags, bool)
  np.testing.assert_allclose(
      crf.crf_marginal_log_likelihood(emissions, tags, everything, lengths, trans, start, end),
      crf.crf_log_likelihood(emissions, tags, lengths, trans, start, end), rtol=1e-5,
      atol=1e-5)
  np.testing.assert_allclose(
      crf.crf_marginal_log_likelihood(emissions, tags, ~everything, lengths, trans, start,
                                      end), 0.0, atol=1e-5)


def test_missing_labels_add_nothing_to_softmax_loss_accuracy_or_count():
  logits = tf.constant(np.random.default_rng(0).normal(size=(2, 3, 4)), tf.float32)
  labels = tf.constant([[1, -1, 2], [-1, -1, 3]])
  mask = tf.ones([2, 3])
  loss = losses.masked_sparse_cross_entropy(labels, logits, mask)
  accuracy = losses.masked_accuracy(labels, logits, mask)
  assert float(loss.count) == 3 and float(accuracy.count) == 3
  kept = [(0, 0, 1), (0, 2, 2), (1, 2, 3)]
  want = sum(-tf.nn.log_softmax(logits[b, t])[k] for b, t, k in kept)
  np.testing.assert_allclose(loss.total, want, rtol=1e-6)


def test_adam_leaves_an_inactive_variable_and_its_moments_bitwise_unchanged():
  a, b = tf.Variable([1.0, -2.0]), tf.Variable([-0.0, 3.0])
  adam = Adam(0.1)
  adam.build([a, b])
  before = [x.numpy().copy() for x in (b, adam.m[1], adam.v[1])]
  adam.apply([tf.ones(2), tf.ones(2)], [a, b], [tf.constant(True), tf.constant(False)])
  for x, y in zip(before, (b, adam.m[1], adam.v[1])):
    assert x.tobytes() == y.numpy().tobytes()
  assert not np.array_equal(a.numpy(), [1.0, -2.0]) and int(adam.iterations.numpy()) == 1


SMALL = dict(word_dim=16, char_dim=8, char_filters=8, hidden_size=16)


def _joint_trainer(chunk_crf):
  sentences = parse_conll(fixtures.conll_text(fixtures.synthetic_sentences(48, seed=0))
                          .encode())
  vocab = Vocabularies.build(sentences, ("pos", "chunk"), min_word_count=1)
  featurizer = Featurizer(vocab)
  config = tagger.TaggerConfig(crf=("chunk",) if chunk_crf else (), reads={"pos": 1}, **SMALL)
  model = tagger.build_tagger(config, num_words=featurizer.num_words,
                              num_chars=featurizer.num_chars,
                              num_tags={t: len(vocab.tags[t]) for t in ("pos", "chunk")}, seed=0)
  stream = pipeline.training_dataset(sentences, featurizer=featurizer, vocabularies=vocab,
                                     tasks=("pos", "chunk"), batch_size=8, seed=0,
                                     buckets=(12, 24, 36))
  trainer = JointTrainer(model=model, tasks=tagger.tagging_tasks(model, ("pos", "chunk")),
                         optimizer=Adam(1e-2), dataset=stream, clip_norm=5.0)
  features, labels = next(iter(stream))
  return trainer, features, dict(labels, chunk=-tf.ones_like(labels["chunk"]))


@pytest.mark.parametrize("chunk_crf", [True, False])
def test_a_batch_without_chunk_labels_gives_the_chunk_head_zero_gradient(chunk_crf):
  assert_chunk_adds_nothing(*_joint_trainer(chunk_crf))


def assert_chunk_adds_nothing(trainer, features, labels):
  """On a batch with no chunk label: no chunk loss, count or units; zero gradient for the
  chunk head; the trunk's gradient of the joint loss equals that of the POS loss alone."""
  model, seed = trainer.model, tf.constant([0, 1], tf.int64)
  trunk, head = model.trunk.trainable_variables, model.heads["chunk"].trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    total, task_losses, reports = trainer.weighted_losses(features, labels, training=True,
                                                          seed=seed)
  assert float(reports["chunk"][0]["loss"].count) == 0 and float(task_losses["chunk"]) == 0
  assert float(reports["chunk"][1]) == 0  # No labelled chunk tokens for the throughput.
  for g in tape.gradient(total, head, unconnected_gradients="zero"):
    assert not np.any(tf.convert_to_tensor(g).numpy())
  joint = tape.gradient(total, trunk, unconnected_gradients="zero")
  alone = tape.gradient(task_losses["pos"], trunk, unconnected_gradients="zero")
  for a, b in zip(joint, alone):
    np.testing.assert_array_equal(tf.convert_to_tensor(a), tf.convert_to_tensor(b))


@pytest.mark.parametrize("chunk_crf", [True, False])
def test_a_joint_step_without_chunk_labels_leaves_the_chunk_head_and_slots_untouched(chunk_crf):
  trainer, features, labels = _joint_trainer(chunk_crf)
  model, optimizer = trainer.model, trainer.optimizer
  head = model.heads["chunk"].trainable_variables
  index = optimizer._index  # pylint: disable=protected-access
  slots = [s for v in head for s in (optimizer.m[index[v.ref()]], optimizer.v[index[v.ref()]])]
  before = [v.numpy().tobytes() for v in (*head, *slots)]
  # POS reads the first trunk layer: it moves the embeddings and that layer;
  # with no chunk label the top layer, like the chunk head, has nothing to learn from.
  lower = [*model.trunk.word_embed.trainable_variables, *model.trunk.layers[0].trainable_variables,
           *model.heads["pos"].trainable_variables]
  top = model.trunk.layers[-1].trainable_variables
  lower_before = [v.numpy().copy() for v in lower]
  top_before = [v.numpy().tobytes() for v in top]
  trainer.step_functions()["joint"](features, labels)
  assert [v.numpy().tobytes() for v in (*head, *slots)] == before
  assert all(not np.array_equal(a, v.numpy()) for a, v in zip(lower_before, lower))
  assert [v.numpy().tobytes() for v in top] == top_before
  assert int(optimizer.iterations.numpy()) == 1
