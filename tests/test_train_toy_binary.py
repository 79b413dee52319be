"""End-to-end tests of `mtl-train --task_set=toy`, in-process (a subprocess where a kill is the
point), with the network from mtlcore's layers and from Keras layers."""

import re

import numpy as np
import pytest
import tensorflow as tf

from tests.binaries import (TRAIN, checkpoint_state, error_line,
                            kill_at_checkpoint_then_resume, run_in_process)


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


KERAS = ["--task_set=toy", "--network=keras", "--deterministic", "--steps_per_loop=10",
         "--log_every=100", "--checkpoint_every=20"]


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_keras_toy_trains_every_layer_and_one_seed_gives_one_checkpoint(tmp_path, mode):
  """The tutorial's network from Keras layers trains through the binary: losses fall, each
  Keras variable is in the checkpoint once and moved, and two runs of one --seed write
  bitwise equal checkpoints (the Keras initialisers draw from the run's seed)."""
  runs = []
  for name in ("first", "second"):
    result = run_in_process(TRAIN, *KERAS, f"--mode={mode}", f"--model_dir={tmp_path / name}",
                            "--train_steps=300", "--seed=4")
    assert result.returncode == 0, result.stderr
    runs.append(checkpoint_state(tmp_path / name))
  losses = _losses(result.stderr)
  for task in ("y1", "y2"):
    assert losses[task][-1] * 3 < losses[task][0], losses
  kernels = sorted(k for k in runs[0] if k.endswith("kernel/.ATTRIBUTES/VARIABLE_VALUE"))
  assert len(kernels) == 3, sorted(runs[0])  # The trunk's Dense and each head's, once each.
  assert runs[0].keys() == runs[1].keys()
  for key in runs[0]:
    np.testing.assert_array_equal(runs[0][key], runs[1][key], err_msg=key)
  other = run_in_process(TRAIN, *KERAS, f"--mode={mode}", f"--model_dir={tmp_path / 'other'}",
                         "--train_steps=20", "--seed=5")
  assert other.returncode == 0, other.stderr
  assert not np.array_equal(checkpoint_state(tmp_path / "other")[kernels[0]], runs[0][kernels[0]])


def test_keras_toy_killed_resumes_bitwise_and_exports(tmp_path):
  """kill -9 after a checkpoint, then the same command: the end state equals an uninterrupted
  run's bitwise; the export serves the Keras network."""
  common = [*KERAS, "--mode=alternate", "--train_steps=400", "--seed=2"]
  whole = run_in_process(TRAIN, *common, f"--model_dir={tmp_path / 'whole'}",
                         f"--export_dir={tmp_path / 'export'}")
  assert whole.returncode == 0, whole.stderr
  model_dir = tmp_path / "killed"
  resumed = kill_at_checkpoint_then_resume([*common, f"--model_dir={model_dir}"], model_dir, 20)
  assert resumed.returncode == 0, resumed.stderr
  assert "Resumed from" in resumed.stderr
  want, got = checkpoint_state(tmp_path / "whole"), checkpoint_state(model_dir)
  assert want.keys() == got.keys()
  for key in want:
    np.testing.assert_array_equal(want[key], got[key], err_msg=key)
  served = tf.saved_model.load(str(tmp_path / "export"))
  outputs = served.signatures["serving_default"](x=tf.ones([3, 10]))
  assert sorted(outputs) == ["y1", "y2"] and outputs["y1"].shape == (3, 1)
