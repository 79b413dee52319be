"""Tests of mtlcore.tagging.crf against brute-force enumeration of all tag paths."""

import itertools

import numpy as np
import tensorflow as tf

from mtlcore.tagging import crf


def _problem(seed, batch=3, steps=4, tags=3):
  rng = np.random.default_rng(seed)
  f = lambda *s: rng.normal(size=s).astype(np.float32)
  return f(batch, steps, tags), f(tags, tags), f(tags), f(tags)


def _score(e, path, trans, start, end):
  return (start[path[0]] + end[path[-1]] + sum(e[t, k] for t, k in enumerate(path))
          + sum(trans[a, b] for a, b in zip(path, path[1:])))


def _all_paths(n, tags):
  return list(itertools.product(range(tags), repeat=n))


def test_log_norm_and_decode_match_brute_force_for_every_length():
  emissions, trans, start, end = _problem(0)
  lengths = np.array([4, 2, 1], np.int32)
  log_z = crf.crf_log_norm(emissions, lengths, trans, start, end).numpy()
  decoded = crf.crf_decode(emissions, lengths, trans, start, end).numpy()
  for b, n in enumerate(lengths):
    scores = {p: _score(emissions[b, :n], p, trans, start, end) for p in _all_paths(n, 3)}
    np.testing.assert_allclose(log_z[b], np.log(np.sum(np.exp(list(scores.values())))),
                               rtol=1e-5)
    assert tuple(decoded[b, :n]) == max(scores, key=scores.get)
    assert np.all(decoded[b, n:] == 0)


def test_log_likelihood_is_the_path_score_minus_log_norm_and_compiles():
  emissions, trans, start, end = _problem(1)
  lengths = np.array([4, 3, 2], np.int32)
  tags = np.array([[0, 1, 2, 1], [2, 2, 0, 0], [1, 0, 0, 0]], np.int32)
  eager = crf.crf_log_likelihood(emissions, tags, lengths, trans, start, end).numpy()
  compiled = tf.function(crf.crf_log_likelihood, jit_compile=True)(
      emissions, tags, lengths, trans, start, end).numpy()
  np.testing.assert_allclose(eager, compiled, rtol=1e-5)
  for b, n in enumerate(lengths):
    paths = _all_paths(n, 3)
    log_z = np.log(sum(np.exp(_score(emissions[b, :n], p, trans, start, end)) for p in paths))
    expected = _score(emissions[b, :n], tuple(tags[b, :n]), trans, start, end) - log_z
    np.testing.assert_allclose(eager[b], expected, rtol=1e-5)


def test_gradients_and_decode_agree_under_xla():
  emissions, trans, start, end = _problem(2, batch=2, steps=6, tags=4)
  lengths = np.array([6, 3], np.int32)
  tags = np.zeros([2, 6], np.int32)
  layer = crf.CRF(4)
  layer.transitions.assign(trans)

  def grads(e):
    with tf.GradientTape() as tape:
      loss = -tf.reduce_sum(layer.log_likelihood(e, tags, lengths))
    return tape.gradient(loss, layer.trainable_variables)

  e = tf.constant(emissions)
  for a, b in zip(grads(e), tf.function(grads, jit_compile=True)(e)):
    np.testing.assert_allclose(a, b, atol=1e-5)
  np.testing.assert_array_equal(
      layer.decode(e, lengths), tf.function(layer.decode, jit_compile=True)(e, lengths))
