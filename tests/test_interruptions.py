"""SIGINT and SIGTERM outside the training loop (start-up, final evaluation, export) end a
binary with one line saying what was written and what a rerun does, exit status 128 + the
signal, no traceback, nothing half-written; the rerun then finishes without training. The
signal is sent to this process from inside the run (in-process, tests.binaries)."""

import os
import signal

import pytest

from mtlcore import export
from mtlcore.trainers import build, run
from tests import fixtures
from tests.binaries import TRAIN, error_line, run_in_process

TOY = ["--task_set=toy", "--train_steps=20", "--steps_per_loop=10", "--nosummaries"]


def _signal_before(monkeypatch, owner, name, signum):
  original = getattr(owner, name)

  def wrapped(*args, **kwargs):
    os.kill(os.getpid(), signum)
    return original(*args, **kwargs)

  monkeypatch.setattr(owner, name, wrapped)


def test_an_interrupted_start_up_leaves_no_checkpoint(tmp_path, monkeypatch):
  _signal_before(monkeypatch, build, "build_model", signal.SIGINT)
  result = run_in_process(TRAIN, *TOY, f"--model_dir={tmp_path / 'm'}")
  assert result.returncode == 130
  assert "interrupted by SIGINT before training; the model directory's checkpoints are as " \
         "they were" in error_line(result)
  assert not (tmp_path / "m" / "checkpoints").exists()


def test_an_interrupted_export_leaves_no_half_export_and_the_rerun_exports(tmp_path,
                                                                          monkeypatch):
  args = [*TOY, f"--model_dir={tmp_path / 'm'}", f"--export_dir={tmp_path / 'export'}"]
  with monkeypatch.context() as patch:
    _signal_before(patch, export, "save", signal.SIGTERM)
    result = run_in_process(TRAIN, *args)
  assert result.returncode == 143
  assert "interrupted by SIGTERM during the export; metrics.json is written" in error_line(
      result)
  assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # No export, no staging.
  again = run_in_process(TRAIN, *args)
  assert again.returncode == 0, again.stderr
  assert (tmp_path / "export" / "saved_model.pb").exists()
  assert "step 10/20" not in again.stderr and "Exported the model" in again.stderr


def test_an_interrupted_final_evaluation_writes_no_metrics_and_the_rerun_evaluates(
    tmp_path, monkeypatch):
  data = fixtures.write_dataset(tmp_path / "data", train=30, test=5)
  args = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--lm_vocab=0",
          "--buckets=16,32", "--steps_per_loop=10", "--nosummaries", "--train_steps=10",
          "--eval_every=0", f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}"]
  with monkeypatch.context() as patch:
    _signal_before(patch, run, "_write_metrics", signal.SIGINT)
    result = run_in_process(TRAIN, *args)
  assert result.returncode == 130
  assert "interrupted by SIGINT during the final evaluation; training is complete and " \
         "checkpointed, metrics.json was not written" in error_line(result)
  assert not (tmp_path / "m" / "metrics.json").exists()
  again = run_in_process(TRAIN, *args)
  assert again.returncode == 0, again.stderr
  assert (tmp_path / "m" / "metrics.json").exists() and "step 10/10" not in again.stderr
