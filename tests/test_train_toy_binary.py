"""End-to-end tests of `mtl-train --task_set=toy`, run as a subprocess."""

import re

import pytest
import tensorflow as tf

from tests.binaries import TRAIN, error_line, run_in_process


def _global_step(model_dir):
  path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return int(tf.train.load_variable(path, "trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def _losses(stderr):
  """{task: [loss at each logged step]} from the progress lines."""
  found = {}
  for task, value in re.findall(r"(y\d)/loss=([0-9.]+)", stderr):
    found.setdefault(task, []).append(float(value))
  return found


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_toy_training_reports_falling_losses_and_resumes(tmp_path, mode):
  args = ["--task_set=toy", f"--mode={mode}", f"--model_dir={tmp_path}", "--log_every=100"]
  first = run_in_process(TRAIN, *args, "--train_steps=600")
  assert first.returncode == 0, first.stderr
  losses = _losses(first.stderr)
  for task in ("y1", "y2"):
    assert losses[task][-1] * 5 < losses[task][0], losses
  assert _global_step(tmp_path) == 600

  second = run_in_process(TRAIN, *args, "--train_steps=800")
  assert second.returncode == 0, second.stderr
  assert "Resumed from" in second.stderr and "at step 600" in second.stderr
  assert "step 800/800" in second.stderr
  assert _global_step(tmp_path) == 800


@pytest.mark.parametrize("flags, message", [
    (["--tasks=y1,nope"], "unknown task(s) ['nope']"),
    (["--mode=single", "--tasks=y1,y2"], "--mode=single trains exactly one task"),
    (["--batch_size=0"], "--batch_size must be positive"),
    (["--learning_rate=-1"], "--learning_rate must be positive"),
    (["--task_weights=1"], "--task_weights needs one number per task"),
    (["--task_weights=1,x"], "--task_weights must be numbers"),
    (["--mode=sideways"], "--mode"),
])
def test_bad_flags_fail_with_one_line(tmp_path, flags, message):
  result = run_in_process(TRAIN, "--task_set=toy", f"--model_dir={tmp_path / 'm'}",
                      "--train_steps=10", *flags)
  assert message in error_line(result)
  assert not (tmp_path / "m").exists()
