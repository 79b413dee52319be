"""Skipped non-finite steps are never silent: counted in the logs and TensorBoard, the first
(and every 100th) named with its task and step, the run's last line gives the count, and a run
with more than half of its steps skipped ends non-zero in one line whatever
--skip_nonfinite_steps allowed. In-process toy runs whose data holds NaN targets."""

import re

import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from mtlcore.toy import data as toy_data
from tests.binaries import TRAIN, error_line, run_in_process

TOY = ["--task_set=toy", "--train_steps=40", "--steps_per_loop=10", "--log_every=10",
       "--skip_nonfinite_steps=1000"]


def _poison(monkeypatch, every):
  """Batch i of every toy stream gets NaN targets of y1 when i % every == every - 1."""
  original = toy_data.toy_dataset

  def poisoned(*args, start=0, **kwargs):
    def nan_y1(i, batch):
      features, labels = batch
      bad = tf.equal(i % every, every - 1)
      return features, {**labels, "y1": tf.where(bad, float("nan"), labels["y1"])}
    return original(*args, start=start, **kwargs).enumerate(start).map(nan_y1)

  monkeypatch.setattr(toy_data, "toy_dataset", poisoned)


def test_skipped_steps_are_logged_counted_in_tensorboard_and_in_the_last_line(
    tmp_path, monkeypatch):
  _poison(monkeypatch, 4)
  result = run_in_process(TRAIN, *TOY, f"--model_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  skipped = [l for l in result.stderr.splitlines() if "non-finite step(s) (NaN/Inf" in l]
  assert len(skipped) == 1, skipped  # The first; the next line would come at the 100th.
  assert re.search(r"Skipped 2 non-finite step\(s\) .* up to step 10, the first in task 'y1' "
                   r"at step 3; 2 skipped in all, --skip_nonfinite_steps=1000 allowed",
                   skipped[0]), skipped[0]
  last = [l for l in result.stderr.splitlines() if l.strip()][-1]
  assert last.endswith("Finished at step 40 of 40: 10 step(s) skipped as non-finite."), last
  events = event_accumulator.EventAccumulator(str(tmp_path / "train"),
                                              size_guidance={"tensors": 0})
  events.Reload()
  counts = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("train/nonfinite_steps")]
  assert counts == [2.0, 5.0, 7.0, 10.0]


def test_a_run_with_more_than_half_of_its_steps_skipped_ends_non_zero(tmp_path, monkeypatch):
  _poison(monkeypatch, 1)
  result = run_in_process(TRAIN, *TOY, f"--model_dir={tmp_path}")
  line = error_line(result)
  assert "40 of the 40 steps were skipped as non-finite" in line and "more than half" in line
