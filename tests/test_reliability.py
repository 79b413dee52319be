"""Reliability: determinism, exact resume after SIGKILL, preemption, checkpoint fallback and
the non-finite guard, each checked through the mtl-train binary."""

import os
import signal
import time

import numpy as np
import pytest

from tests import fixtures
from tests.binaries import (QUICK_TAGGER, TRAIN, checkpoint_state, error_line,
                            kill_at_checkpoint_then_resume, popen_binary, run_in_process, wait_for)

TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--steps_per_loop=10",
        "--log_every=10", "--learning_rate=0.01", "--eval_every=0", "--lm_vocab=0",
        "--buckets=32"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fixtures.write_dataset(tmp_path_factory.mktemp("data"), train=60, test=10)


def _assert_same_state(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def _train_args(data_dir, model_dir, *extra, quick=True):
  """mtl-train's flags; `quick`: QUICK_TAGGER's (all but the determinism test, which keeps the
  default trunk under XLA)."""
  return ["--mode=alternate", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
          "--deterministic", *TINY, *(QUICK_TAGGER if quick else ()), *extra]


def test_deterministic_runs_are_bitwise_identical_and_the_seed_matters(data_dir, tmp_path):
  states = []
  for name, seed in (("a", 0), ("b", 0), ("c", 1)):
    result = run_in_process(TRAIN, *_train_args(data_dir, tmp_path / name, "--train_steps=20",
                                                f"--seed={seed}", quick=False))
    assert result.returncode == 0, result.stderr
    states.append(checkpoint_state(tmp_path / name))
  _assert_same_state(states[0], states[1])
  weights = [k for k in states[0] if "embeddings" in k or "kernel" in k]
  assert weights and all(not np.array_equal(states[0][k], states[2][k]) for k in weights)


def test_sigkill_at_a_random_step_then_resume_gives_the_uninterrupted_result(data_dir,
                                                                             tmp_path):
  # Two buckets: the resumed streams must pick their epoch plans up mid-way across buckets.
  common = ["--train_steps=80", "--checkpoint_every=20", "--seed=3", "--buckets=16,32"]
  whole = run_in_process(TRAIN, *_train_args(data_dir, tmp_path / "whole", *common))
  assert whole.returncode == 0, whole.stderr

  kill_after = int(np.random.default_rng().choice([20, 40, 60]))
  model_dir = tmp_path / "killed"
  resumed = kill_at_checkpoint_then_resume(_train_args(data_dir, model_dir, *common), model_dir,
                                           kill_after)
  assert resumed.returncode == 0, resumed.stderr
  assert "Resumed from" in resumed.stderr
  _assert_same_state(checkpoint_state(tmp_path / "whole"), checkpoint_state(model_dir))


def test_sigterm_checkpoints_exits_zero_and_the_restart_continues(data_dir, tmp_path):
  args = _train_args(data_dir, tmp_path, "--train_steps=100000", "--checkpoint_every=100000")
  proc = popen_binary(TRAIN, *args)
  wait_for(lambda: (tmp_path / "train").is_dir() and any(
      (tmp_path / "train").glob("events*")) and os.path.getsize(
          next((tmp_path / "train").glob("events*"))) > 2000, proc)
  sent = time.time()
  proc.send_signal(signal.SIGTERM)
  _, stderr = proc.communicate(timeout=60)
  assert proc.returncode == 0, stderr
  assert time.time() - sent < 30
  assert "Stopping at step" in stderr and "SIGTERM" in stderr
  step = int(checkpoint_state(tmp_path)["trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"])
  assert step > 0
  again = run_in_process(TRAIN, *args[:-2], f"--train_steps={step + 10}")
  assert again.returncode == 0, again.stderr
  assert f"at step {step}." in again.stderr


def test_an_unreadable_latest_checkpoint_falls_back_to_the_previous_one(data_dir, tmp_path):
  args = _train_args(data_dir, tmp_path, "--checkpoint_every=20")
  assert run_in_process(TRAIN, *args, "--train_steps=40").returncode == 0
  data_file = next((tmp_path / "checkpoints").glob("ckpt-40.data-*"))
  data_file.write_bytes(data_file.read_bytes()[:100])  # As if the write was cut short.
  result = run_in_process(TRAIN, *args, "--train_steps=50")
  assert result.returncode == 0, result.stderr
  assert "ckpt-40 is unreadable" in result.stderr
  assert "ckpt-20 at step 20" in result.stderr


def test_a_nonfinite_loss_stops_training_naming_task_and_step(tmp_path):
  result = run_in_process(TRAIN, "--task_set=toy", "--mode=alternate",
                      "--learning_rate=1e30", "--train_steps=200", "--steps_per_loop=1",
                      "--checkpoint_every=1", f"--model_dir={tmp_path}")
  line = error_line(result)
  assert "Non-finite loss or gradient in task 'y" in line and "at global step" in line
  # The last checkpoint is readable; no weight or slot is NaN/Inf.
  state = checkpoint_state(tmp_path)
  assert all(np.all(np.isfinite(v)) for k, v in state.items() if k.startswith("trainer/"))
  assert int(state["trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"]) < 200
