"""Tests of mtlcore.sampling."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.sampling import TaskSampler


def test_sampler_follows_its_probabilities():
  sampler = TaskSampler(["a", "b", "c"], [0.2, 0.0, 0.8], seed=3)
  draws = np.array([int(sampler.sample()) for _ in range(2000)])
  counts = np.bincount(draws, minlength=3) / 2000
  assert counts[1] == 0
  assert abs(counts[0] - 0.2) < 0.04 and abs(counts[2] - 0.8) < 0.04


def test_restoring_a_checkpoint_replays_the_same_task_sequence(tmp_path):
  sampler = TaskSampler(["a", "b"], seed=0)
  [sampler.sample() for _ in range(5)]
  path = tf.train.Checkpoint(sampler=sampler).write(str(tmp_path / "ckpt"))
  expected = [int(sampler.sample()) for _ in range(20)]
  other = TaskSampler(["a", "b"], seed=99)
  tf.train.Checkpoint(sampler=other).read(path).assert_consumed()
  assert [int(other.sample()) for _ in range(20)] == expected


@pytest.mark.parametrize("probabilities", [[1.0], [-1.0, 2.0], [0.0, 0.0], [float("nan"), 1]])
def test_bad_probabilities_are_rejected(probabilities):
  with pytest.raises(ConfigError, match="probabilities"):
    TaskSampler(["a", "b"], probabilities, seed=0)
