"""Training under tf.distribute: MirroredStrategy over 2 logical CPUs gives the single-device
step, resumes exactly, moves checkpoints both ways, and refuses what it cannot run.

Logical devices must be set before TensorFlow starts, so each check that splits the CPU runs
in a subprocess (tests/replica_check.py, every check in one process, or the mtl-train binary
with --num_logical_cpus=2); what is refused before devices are set, or runs on one device
(mtl-eval), runs in-process.
"""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

from tests import fixtures
from tests.binaries import (EVAL, QUICK_TAGGER, TRAIN, checkpoint_state, error_line,
                            kill_at_checkpoint_then_resume, run_binary, run_in_process, wait_for)
from tests.test_reliability import _assert_same_state

TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--steps_per_loop=10",
        "--log_every=10", "--learning_rate=0.01", "--eval_every=0", "--lm_vocab=0",
        "--buckets=32", *QUICK_TAGGER]
MIRRORED = ["--strategy=mirrored", "--num_logical_cpus=2"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
  return fixtures.write_dataset(tmp_path_factory.mktemp("data"), train=60, test=10)


CHECKS = ("joint", "alternate", "restore", "seeds", "errors", "keras")


@pytest.fixture(scope="module")
def checks(data_dir):
  """Runs every check of tests/replica_check.py in one subprocess (one TensorFlow start-up);
  {check: its output lines, the JSON ones parsed}."""
  result = subprocess.run([sys.executable, "-m", "tests.replica_check", ",".join(CHECKS),
                           str(data_dir)], capture_output=True, text=True, timeout=900,
                          check=False)
  assert result.returncode == 0, result.stderr
  out = {}
  for line in result.stdout.splitlines():
    if line.startswith("### "):
      current = out.setdefault(line[4:], [])
    else:
      current.append(json.loads(line) if line.startswith("{") else line)
  assert sorted(out) == sorted(CHECKS), result.stdout
  return out


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_one_mirrored_step_over_two_replicas_equals_one_step_on_the_global_batch(mode, checks):
  (out,) = checks[mode]
  assert out["uneven"] > 0  # Replicas get sentences of different lengths.
  assert out["grad_scale"] > 1e-3
  assert out["grad_diff"] <= 1e-5, out
  # After 4 Adam steps at rate 1e-2: Adam divides by sqrt(v), so a rounding difference in a
  # tiny gradient can move a weight by up to ~rate; 1e-4 is 1% of one step's largest move.
  assert out["weight_diff"] <= 1e-4, out
  assert out["steps"] == 4


def test_a_checkpoint_moves_between_one_device_and_mirrored_replicas(checks):
  (out,) = checks["restore"]
  assert out["differed_before"] > 0  # Writer and reader started from other weights.
  assert out["variables"] > 20 and out["restore_diff"] == 0.0


def test_each_replica_draws_its_own_dropout_masks(checks):
  (out,) = checks["seeds"]
  assert out["seeds"] == [[0, 0], [0, 1]]  # (seed, global step x 2 + replica)


def test_keras_batchnorm_mirrored_equals_one_device_and_replicas_hold_one_statistic(checks):
  (result,) = checks["keras"]
  assert result["same_weight_diff"] < 1e-5 and result["same_state_diff"] < 1e-5, result
  assert result["same_moved"] > 1e-3, result
  assert result["split_trunk_mean_diff"] < 1e-5, result
  assert result["split_copies_diff"] == 0.0, result


def test_what_a_strategy_cannot_run_is_one_line_naming_it(checks):
  lines = checks["errors"]
  assert lines[0] == "no error"  # A gradient method builds under a strategy.
  assert lines[1].startswith("Task 'chunk' has no loss_count")


def _train(data_dir, model_dir, *extra, mode="joint"):
  return [f"--mode={mode}", f"--data_dir={data_dir}", f"--model_dir={model_dir}",
          "--deterministic", *MIRRORED, *TINY, *extra]


# The joint run the two-worker test must equal; the evaluation, export and resume checks
# read it too.
JOINT = ["--mode=joint", "--deterministic", *TINY, "--train_steps=30", "--checkpoint_every=10",
         "--seed=5"]


@pytest.fixture(scope="module")
def mirrored_run(data_dir, tmp_path_factory):
  """A 2-replica mirrored joint run with an export: (its model dir, the export)."""
  root = tmp_path_factory.mktemp("mirrored")
  trained = run_binary(TRAIN, *JOINT, *MIRRORED, f"--data_dir={data_dir}",
                       f"--model_dir={root / 'm'}", f"--export_dir={root / 'export'}")
  assert trained.returncode == 0, trained.stderr
  return root / "m", root / "export"


def test_sigkill_then_resume_under_mirrored_gives_the_uninterrupted_result(data_dir,
                                                                          mirrored_run, tmp_path):
  """The joint mirrored run (`mirrored_run`, uninterrupted) against the same command killed
  once its checkpoint at step 20 is written, then run again."""
  model_dir = tmp_path / "killed"
  args = [*JOINT, *MIRRORED, f"--data_dir={data_dir}", f"--model_dir={model_dir}"]
  resumed = kill_at_checkpoint_then_resume(args, model_dir, 20)
  assert resumed.returncode == 0, resumed.stderr
  assert "Resumed from" in resumed.stderr
  _assert_same_state(checkpoint_state(mirrored_run[0]), checkpoint_state(model_dir))


def test_a_mirrored_run_evaluates_and_exports_on_one_device_and_resumes_only_mirrored(
    data_dir, mirrored_run, tmp_path):
  model_dir, export = mirrored_run
  assert (export / "saved_model.pb").exists()
  stored = json.loads((model_dir / "metrics.json").read_text())
  evaluated = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data_dir}",
                             "--split=test")
  assert evaluated.returncode == 0, evaluated.stderr
  assert f"{stored['test']['chunk/f1']:.2f}" in evaluated.stdout + evaluated.stderr
  # Refused before any device is set up, so in this process (on a copy: nothing is written).
  shutil.copytree(model_dir, tmp_path / "m")
  changed = error_line(run_in_process(TRAIN, *JOINT, "--train_steps=40",
                                      f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'm'}"))
  assert "--strategy: 'mirrored' -> 'default'" in changed


def test_strategy_flags_that_cannot_work_are_one_line_errors(data_dir, tmp_path):
  odd = error_line(run_binary(TRAIN, *_train(data_dir, tmp_path / "a", "--batch_size=7")))
  assert "--batch_size=7 must be a multiple of the 2 replicas" in odd
  assert not (tmp_path / "a").exists()
  alone = error_line(run_binary(TRAIN, f"--data_dir={data_dir}", f"--model_dir={tmp_path}/b",
                                "--num_logical_cpus=2", *TINY))
  assert "--num_logical_cpus=2 only makes sense with --strategy=mirrored" in alone


def _free_ports(count):
  sockets = [socket.socket() for _ in range(count)]
  for s in sockets:
    s.bind(("localhost", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _tf_config(ports, index):
  return json.dumps({"cluster": {"worker": [f"localhost:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


def _worker(index, ports, args, tmp):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=_tf_config(ports, index),
             TMPDIR=str(tmp))
  return subprocess.Popen([sys.executable, "-m", TRAIN, *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_two_workers_on_one_machine_train_as_two_mirrored_replicas_and_only_the_chief_writes(
    data_dir, mirrored_run, tmp_path):
  # Joint mode (alternating under a strategy is pinned by the mirrored tests; it adds only
  # the sampler's draw, made outside the replicas).
  scratch = [tmp_path / "tmp0", tmp_path / "tmp1"]
  for d in scratch:
    d.mkdir()
  ports = _free_ports(2)
  args = [*JOINT, f"--data_dir={data_dir}", "--strategy=multi_worker",
          f"--model_dir={tmp_path / 'chief'}", "--worker_timeout=120"]
  procs = [_worker(i, ports, args, scratch[i]) for i in range(2)]
  outputs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err
  _assert_same_state(checkpoint_state(mirrored_run[0]), checkpoint_state(tmp_path / "chief"))
  stored = json.loads((tmp_path / "chief" / "metrics.json").read_text())
  evaluated = run_in_process(EVAL, f"--model_dir={tmp_path / 'chief'}",
                             f"--data_dir={data_dir}")
  assert evaluated.returncode == 0, evaluated.stderr  # The chief's checkpoint restores alone.
  assert f"{stored['test']['chunk/f1']:.2f}" in evaluated.stdout + evaluated.stderr
  assert not any(scratch[1].iterdir())  # The worker's checkpoints went, with its directory.


def test_a_worker_whose_peers_never_come_exits_with_one_line(data_dir, tmp_path):
  ports = _free_ports(2)
  proc = _worker(0, ports, [f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'm'}", *TINY,
                            "--strategy=multi_worker", "--worker_timeout=5"], tmp_path)
  _, err = proc.communicate(timeout=300)
  assert proc.returncode != 0  # Killed: TensorFlow's join holds the GIL (trainers.workers).
  lines = [l for l in err.splitlines() if ": error: " in l]
  assert len(lines) == 1 and "Traceback" not in err, err
  assert "worker:0 waited 5 s (--worker_timeout)" in lines[0]


def test_sigterm_to_one_worker_stops_both_at_the_same_step_with_a_checkpoint(data_dir,
                                                                             tmp_path):
  ports = _free_ports(2)
  model_dir = tmp_path / "chief"
  args = [f"--data_dir={data_dir}", f"--model_dir={model_dir}", *TINY, "--train_steps=100000",
          "--checkpoint_every=100000", "--strategy=multi_worker", "--worker_timeout=120"]
  procs = [_worker(i, ports, args, tmp_path) for i in range(2)]
  wait_for(lambda: (model_dir / "train").is_dir() and any((model_dir / "train").glob("events*")),
           procs[0])
  time.sleep(5)  # A few loops in.
  procs[1].send_signal(signal.SIGTERM)
  outputs = [p.communicate(timeout=300) for p in procs]
  steps = []
  for p, (_, err) in zip(procs, outputs):
    assert p.returncode == 0, err
    stopped = re.findall(r"Stopping at step (\d+)", err)
    assert len(stopped) == 1, err
    steps.append(int(stopped[0]))
  assert steps[0] == steps[1] > 0
  assert (model_dir / "checkpoints" / f"ckpt-{steps[0]}.index").exists()


def test_multi_worker_without_a_usable_tf_config_is_one_line_and_writes_nothing(data_dir,
                                                                                tmp_path):
  for tf_config, expected in ((None, "--strategy=multi_worker needs TF_CONFIG"),
                              ("{not json", "TF_CONFIG is not a cluster spec")):
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    if tf_config:
      env["TF_CONFIG"] = tf_config
    result = subprocess.run(
        [sys.executable, "-m", TRAIN, f"--data_dir={data_dir}", f"--model_dir={tmp_path / 'm'}",
         "--strategy=multi_worker", *TINY], env=env, capture_output=True, text=True,
        timeout=300, check=False)
    assert expected in error_line(result)
    assert not (tmp_path / "m").exists()
