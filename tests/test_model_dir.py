"""The model directory's guarantees, through mtl-train: one run at a time, a lock left by a
killed run is taken over, a full disk at any write site is one line with the last good
checkpoint intact, and a resumed run applies or refuses changed settings, never ignores them."""

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from mtlcore.errors import ConfigError
from mtlcore.trainers import run
from mtlcore.trainers.config import RunConfig
from tests import fixtures
from tests.binaries import (QUICK_TAGGER, TRAIN, error_line, popen_binary, run_binary,
                            run_in_process, wait_for)

SMALL = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--steps_per_loop=10",
         "--log_every=10", "--learning_rate=0.01", "--buckets=32", "--lm_vocab=0", *QUICK_TAGGER]


def _checkpoint_value(model_dir, key):
  path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return tf.train.load_variable(path, key)


def _global_step(model_dir):
  return int(_checkpoint_value(model_dir, "trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"))


def test_a_second_run_on_a_directory_in_use_is_refused_and_a_killed_runs_lock_taken_over(
    tmp_path):
  args = ["--task_set=toy", f"--model_dir={tmp_path}", "--train_steps=10000000",
          "--checkpoint_every=100000"]
  first = popen_binary(TRAIN, *args)
  lock = tmp_path / ".lock"
  wait_for(lambda: lock.exists() and lock.read_text().strip(), first)
  holder = json.loads(lock.read_text())
  assert holder["pid"] == first.pid
  wait_for(lambda: (tmp_path / "train").is_dir(), first)

  second = run_binary(TRAIN, "--task_set=toy", f"--model_dir={tmp_path}", "--train_steps=10")
  line = error_line(second)
  assert f"is in use by another run (pid {first.pid} on " in line
  assert first.poll() is None  # The first run goes on, untouched.

  first.send_signal(signal.SIGKILL)
  first.wait()
  assert json.loads(lock.read_text())["pid"] == first.pid  # Left behind by the killed run.
  third = run_binary(TRAIN, "--task_set=toy", f"--model_dir={tmp_path}", "--train_steps=10",
                     "--checkpoint_every=10")
  assert third.returncode == 0, third.stderr
  assert f"Took over the lock of pid {first.pid}" in third.stderr
  assert lock.read_text() == ""  # Released at the end.


# Runs mtl-train's entry point with RLIMIT_FSIZE lowered right before one write site, so the
# write fails with EFBIG ("File too large") as it would on a full disk. Python ignores SIGXFSZ.
_LIMITED_RUN = textwrap.dedent("""
    import resource, sys
    from mtlcore import export
    from mtlcore.trainers import loop, model_dir, summaries
    from mtlcore.trainers.cli import train

    site, after_step, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]

    def limit():
      resource.setrlimit(resource.RLIMIT_FSIZE, (64, 64))

    def before(owner, name, when=lambda *a, **k: True):
      original = getattr(owner, name)
      def wrapped(*args, **kwargs):
        if when(*args, **kwargs):
          limit()
        return original(*args, **kwargs)
      setattr(owner, name, wrapped)

    if site == "checkpoint":
      before(loop.TrainingLoop, "_save", lambda self, step: step > after_step)
    elif site == "summaries":
      before(summaries.Summaries, "on_loop_end", lambda self, logs: logs.step > after_step)
    elif site == "metrics":
      before(model_dir.ModelDir, "write_metrics")
    elif site == "export":
      before(export, "save")
    sys.argv = ["mtl-train", *argv]
    train.console_main()
""")


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fixtures.write_dataset(tmp_path_factory.mktemp("data"), train=60, test=10)


@pytest.mark.parametrize("site, what", [
    ("checkpoint", "could not write the checkpoint at step 40 (File too large)"),
    ("summaries", "could not write the TensorBoard train summaries (File too large)"),
    ("metrics", "could not write metrics.json (File too large)"),
    ("export", "could not write the export to"),
])
def test_a_full_disk_at_each_write_site_is_one_line_and_the_last_checkpoint_restores(
    data_dir, tmp_path, site, what):
  model_dir, export_dir = tmp_path / "m", tmp_path / "export"
  # The toy task set reaches the same write sites as the tagger at a fraction of its compile
  # time, all but metrics.json, which only a task set with held-out splits writes.
  task_set = ([f"--data_dir={data_dir}", "--eval_every=0", *SMALL] if site == "metrics" else
              ["--task_set=toy", "--steps_per_loop=10"])
  args = [*task_set, f"--model_dir={model_dir}", f"--export_dir={export_dir}",
          "--train_steps=40", "--checkpoint_every=20"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  failed = subprocess.run([sys.executable, "-c", _LIMITED_RUN, site, "20", *args], env=env,
                          capture_output=True, text=True, timeout=600, check=False)
  line = error_line(failed)
  assert what in line, line
  survivor = "ckpt-40" if site in ("metrics", "export") else "ckpt-20"
  assert f"the last good checkpoint {survivor} is intact" in line
  assert _global_step(model_dir) == int(survivor.split("-")[1])
  assert not list((model_dir / "checkpoints").glob("*_temp"))
  assert not export_dir.exists()
  assert (model_dir / ".lock").read_text() == ""  # The failed run released the directory.

  again = run_in_process(TRAIN, *args)
  assert again.returncode == 0, again.stderr
  assert f"Resumed from {model_dir / 'checkpoints' / survivor}" in again.stderr
  assert _global_step(model_dir) == 40
  if site == "metrics":
    assert json.loads((model_dir / "metrics.json").read_text())["steps"] == 40
  assert (export_dir / "saved_model.pb").exists()


def _adam_rate(model_dir):
  return float(_checkpoint_value(
      model_dir, "trainer/optimizer/learning_rate/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.fixture
def absl_info(caplog):
  """The absl log lines of an in-process run."""
  caplog.set_level(logging.INFO, logger="absl")
  return caplog


def _toy(model_dir, **settings):
  return RunConfig(task_set="toy", model_dir=str(model_dir), **settings)


def test_a_changed_learning_rate_on_resume_is_applied_and_logged(tmp_path, absl_info):
  run.train(_toy(tmp_path, train_steps=50, checkpoint_every=50))
  assert _adam_rate(tmp_path) == pytest.approx(0.01)
  run.train(_toy(tmp_path, train_steps=100, checkpoint_every=50, learning_rate=0.002))
  assert "--learning_rate changed from 0.01 to 0.002; applied" in absl_info.text
  assert "base learning rate 0.01 from the checkpoint replaced by 0.002" in absl_info.text
  assert _adam_rate(tmp_path) == pytest.approx(0.002)
  assert json.loads((tmp_path / "config.json").read_text())["learning_rate"] == 0.002


def test_a_longer_run_on_resume_is_applied_and_its_schedule_spans_the_new_length(
    tmp_path, absl_info):
  run.train(_toy(tmp_path, train_steps=100, lr_decay_start=0.5, steps_per_loop=10))
  run.train(_toy(tmp_path, train_steps=200, lr_decay_start=0.5, steps_per_loop=10))
  assert "--train_steps changed from 100 to 200; applied" in absl_info.text
  assert _global_step(tmp_path) == 200
  acc = event_accumulator.EventAccumulator(str(tmp_path / "train"),
                                           size_guidance={"tensors": 0})
  acc.Reload()
  rates = {e.step: float(tf.make_ndarray(e.tensor_proto))
           for e in acc.Tensors("optimizer/learning_rate/joint")}
  # The first run's schedule, LinearDecay(100, decay_start=0.5), reached 0 at step 100; the
  # resumed run's, LinearDecay(200, decay_start=0.5), is 0.01 x (1 - 10/100) at step 110.
  np.testing.assert_allclose(rates[100], 0.0, atol=1e-9)
  np.testing.assert_allclose(rates[110], 0.01 * 0.9, rtol=1e-5)


@pytest.mark.parametrize("change, message", [
    (dict(options={"hidden_size": 30}), "(--hidden_size: 20 -> 30)"),
    (dict(seed=1), "(--seed: 0 -> 1)"),
    (dict(batch_size=16), "(--batch_size: 32 -> 16)"),
    (dict(mode="alternate"), "(--mode: 'joint' -> 'alternate')"),
    (dict(lr_decay_start=0.5), "(--lr_decay_start: 1.0 -> 0.5)"),
])
def test_a_resume_that_changes_what_the_checkpoint_fixed_is_refused(tmp_path, change, message):
  run.train(_toy(tmp_path, train_steps=20))
  with pytest.raises(ConfigError, match="holds a run with different settings") as refused:
    run.train(_toy(tmp_path, train_steps=40, **change))
  assert message in str(refused.value), refused.value
  assert _global_step(tmp_path) == 20
  assert (tmp_path / ".lock").read_text() == ""


def test_the_binary_prints_a_refused_resume_as_one_line(tmp_path):
  common = ["--task_set=toy", f"--model_dir={tmp_path}"]
  assert run_in_process(TRAIN, *common, "--train_steps=20").returncode == 0
  line = error_line(run_in_process(TRAIN, *common, "--train_steps=40", "--hidden_size=30"))
  assert "holds a run with different settings (--hidden_size: 20 -> 30)" in line
