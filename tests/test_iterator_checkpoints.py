"""--checkpoint_iterators: a task set's own tf.data pipeline (a shuffle buffer, no plan) has
its iterator saved in the checkpoint, and a run stopped and resumed ends bitwise where an
uninterrupted one does; a pipeline whose iterator cannot be saved keeps resuming by position;
start-up says which, and what it costs; a resume may not switch it."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import task_set
from mtlcore.errors import ConfigError
from mtlcore.trainers import run
from mtlcore.trainers.config import RunConfig
from tests.binaries import TRAIN, checkpoint_state, run_in_process
from tests.test_evaluation import Small


class Shuffled(Small):
  """Small's joint corpus through a plain tf.data pipeline with a shuffle buffer."""

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    features, labels = data["train"]
    dataset = tf.data.Dataset.from_tensor_slices((features, {t: labels[t] for t in tasks}))
    dataset = dataset.shuffle(64, seed=seed).repeat().batch(batch_size, drop_remainder=True)
    return task_set.Stream(dataset.skip, steps_per_epoch=len(features["x"]) // batch_size)


class Generated(Small):
  """Small's joint corpus from a Python generator (tf.data cannot save its iterator)."""

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    features, labels = data["train"]
    n = len(features["x"])

    def rows():
      for i in range(10**9):
        yield {"x": features["x"][i % n]}, {t: labels[t][i % n] for t in tasks}

    spec = tf.data.Dataset.from_tensor_slices((features, {t: labels[t] for t in tasks}))
    dataset = tf.data.Dataset.from_generator(rows, output_signature=spec.element_spec)
    return task_set.Stream(lambda start: dataset.batch(batch_size).skip(start),
                           steps_per_epoch=n // batch_size)


def _config(model_dir, steps, **kwargs):
  return RunConfig(task_set="tests.test_iterator_checkpoints:Shuffled", model_dir=str(model_dir),
                   mode="joint", train_steps=steps, steps_per_loop=10, checkpoint_every=10,
                   eval_every=0, batch_size=8, deterministic=True, checkpoint_iterators=True,
                   **kwargs)


def test_a_saved_iterator_resumes_bitwise_where_the_uninterrupted_run_ends(tmp_path):
  run.train(_config(tmp_path / "whole", 40))
  run.train(_config(tmp_path / "resumed", 20))
  run.train(_config(tmp_path / "resumed", 40))
  whole, resumed = checkpoint_state(tmp_path / "whole"), checkpoint_state(tmp_path / "resumed")
  assert any("input_iterators" in k for k in _keys(tmp_path / "resumed"))
  assert whole.keys() == resumed.keys()
  for key in whole:
    np.testing.assert_array_equal(whole[key], resumed[key], err_msg=key)
  with pytest.raises(ConfigError, match="checkpoint_iterators"):
    run.train(dataclasses.replace(_config(tmp_path / "whole", 50), checkpoint_iterators=False))


def test_start_up_says_what_is_saved_and_what_keeps_its_position(tmp_path):
  saved = run_in_process(TRAIN, "--task_set=tests.test_iterator_checkpoints:Shuffled",
                         f"--model_dir={tmp_path / 'a'}", "--train_steps=10", "--eval_every=0",
                         "--batch_size=8", "--checkpoint_iterators")
  assert saved.returncode == 0, saved.stderr
  assert "--checkpoint_iterators: input streams saved in the checkpoint: joint (+" in saved.stderr
  kept = run_in_process(TRAIN, "--task_set=tests.test_iterator_checkpoints:Generated",
                        f"--model_dir={tmp_path / 'b'}", "--train_steps=10", "--eval_every=0",
                        "--batch_size=8", "--checkpoint_iterators")
  assert kept.returncode == 0, kept.stderr
  assert ("--checkpoint_iterators: input streams resuming by position, as their iterators "
          "cannot be saved: joint (") in kept.stderr
  assert not any("input_iterators" in k for k in _keys(tmp_path / "b"))
  assert any("input_iterators" in k for k in _keys(tmp_path / "a"))


def _keys(model_dir):
  path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return list(tf.train.load_checkpoint(path).get_variable_to_shape_map())
