"""Tests of mtlcore.sampling: each sampler's probabilities against its formula, its draws
against those probabilities, round-robin exactly, and the exact sequence after a restore."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.sampling import TaskSampler

NAMES = ("a", "b", "c")
SIZES = (100.0, 400.0, 2500.0)
TOTAL = 1001


def _formula(kind, step, temperature=2.0, final_exponent=0.2):
  """The README formulas in numpy, float64."""
  n = np.asarray(SIZES)
  if kind == "uniform":
    p = np.ones(3)
  elif kind == "proportional":
    p = n
  elif kind == "temperature":
    p = n ** (1 / temperature)
  elif kind == "annealed":
    f = min(step / (TOTAL - 1), 1.0)
    p = n ** (1 - (1 - final_exponent) * f)
  return p / p.sum()


def _draws(sampler, steps):
  """sampler.sample(step) for each of the int64 `steps`, drawn in order inside one
  tf.function (10,000 eager calls take ~20 s)."""
  @tf.function(autograph=False)
  def draw(steps):
    return tf.map_fn(sampler.sample, steps, fn_output_signature=tf.int32, parallel_iterations=1)
  return draw(tf.constant(steps, tf.int64)).numpy()


def _sampler(kind, seed=0, **kwargs):
  return TaskSampler(NAMES, kind=kind, sizes=SIZES, total_steps=TOTAL, temperature=2.0,
                     seed=seed, **kwargs)


@pytest.mark.parametrize("kind, step", [("uniform", 0), ("proportional", 0),
                                        ("temperature", 0), ("annealed", 0),
                                        ("annealed", 250), ("annealed", 500),
                                        ("annealed", 1000), ("annealed", 5000)])
def test_probabilities_equal_their_formula(kind, step):
  p = _sampler(kind).probabilities(tf.constant(step, tf.int64)).numpy()
  np.testing.assert_allclose(p, _formula(kind, step), atol=1e-6)


def test_the_annealed_sampler_moves_from_proportional_towards_uniform():
  sampler = _sampler("annealed")
  first, last = (sampler.probabilities(tf.constant(s, tf.int64)).numpy() for s in (0, 1000))
  np.testing.assert_allclose(first, _formula("proportional", 0), atol=1e-6)
  assert last[0] > first[0] and last[2] < first[2]


@pytest.mark.parametrize("kind", ["uniform", "proportional", "temperature"])
def test_counts_over_10000_draws_lie_within_4_standard_deviations(kind):
  sampler, draws = _sampler(kind, seed=5), 10_000
  counts = np.bincount(_draws(sampler, np.zeros(draws, np.int64)), minlength=3)
  p = _formula(kind, 0)
  std = np.sqrt(draws * p * (1 - p))
  assert np.all(np.abs(counts - draws * p) < 4 * std), (counts, draws * p)


def test_annealed_counts_follow_the_moving_probabilities():
  sampler = _sampler("annealed", seed=2)
  steps = np.arange(TOTAL) % TOTAL
  draws = _draws(sampler, np.tile(steps, 10))
  expected = 10 * sum(_formula("annealed", s) for s in steps)
  variance = 10 * sum(_formula("annealed", s) * (1 - _formula("annealed", s)) for s in steps)
  counts = np.bincount(draws, minlength=3)
  assert np.all(np.abs(counts - expected) < 4 * np.sqrt(variance)), (counts, expected)
  np.testing.assert_allclose(sampler.expected_share(), expected / draws.size, atol=1e-6)


def test_weighted_sampler_follows_its_weights():
  sampler = TaskSampler(NAMES, [0.2, 0.0, 0.8], seed=3)
  draws = _draws(sampler, np.zeros(2000, np.int64))
  counts = np.bincount(draws, minlength=3) / 2000
  assert counts[1] == 0
  assert abs(counts[0] - 0.2) < 0.04 and abs(counts[2] - 0.8) < 0.04
  np.testing.assert_allclose(sampler.expected_share(), [0.2, 0.0, 0.8], atol=1e-6)


def test_round_robin_is_exact():
  sampler = _sampler("round_robin")
  assert [int(sampler.sample(tf.constant(s, tf.int64))) for s in range(7)] == [
      0, 1, 2, 0, 1, 2, 0]
  np.testing.assert_allclose(sampler.expected_share(), [334 / 1001, 334 / 1001, 333 / 1001])


@pytest.mark.parametrize("kind", ["uniform", "proportional", "temperature", "annealed",
                                  "round_robin"])
def test_restoring_a_checkpoint_replays_the_sequence_still_to_come(tmp_path, kind):
  sampler = _sampler(kind)
  [sampler.sample(tf.constant(s, tf.int64)) for s in range(5)]
  path = tf.train.Checkpoint(sampler=sampler).write(str(tmp_path / "ckpt"))
  expected = [int(sampler.sample(tf.constant(s, tf.int64))) for s in range(5, 300)]
  other = _sampler(kind, seed=99)
  tf.train.Checkpoint(sampler=other).read(path).assert_consumed()
  assert [int(other.sample(tf.constant(s, tf.int64))) for s in range(5, 300)] == expected


def test_sampling_inside_a_tf_function_matches_eager():
  """The trainer samples in its outer tf.function loop (not under XLA, whose generator
  kernels draw other numbers)."""
  eager, graph = _sampler("annealed", seed=4), _sampler("annealed", seed=4)
  draw = tf.function(graph.sample)
  steps = [tf.constant(s, tf.int64) for s in range(0, 1000, 7)]
  assert [int(draw(s)) for s in steps] == [int(eager.sample(s)) for s in steps]


@pytest.mark.parametrize("weights", [[1.0], [-1.0, 2.0, 1.0], [0.0, 0.0, 0.0],
                                     [float("nan"), 1, 1]])
def test_bad_probabilities_are_rejected(weights):
  with pytest.raises(ConfigError, match="probabilities"):
    TaskSampler(NAMES, weights, seed=0)


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="sideways"), "--sampler must be one of"),
    (dict(kind="proportional"), "needs a positive size for each task"),
    (dict(kind="temperature", sizes=SIZES, temperature=0.0), "--sampler_temperature must be"),
    (dict(kind="annealed", sizes=SIZES), "needs the training length"),
    (dict(kind="proportional", sizes=(1.0, 0.0, 2.0)), "needs a positive size"),
])
def test_bad_sampler_settings_name_the_flag(kwargs, message):
  with pytest.raises(ConfigError, match=message):
    TaskSampler(NAMES, seed=0, **kwargs)
