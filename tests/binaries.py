"""Helpers to run the project's binaries as a user would: in a subprocess."""

import os
import subprocess
import sys
import time

TRAIN = "mtlcore.trainers.cli.train"
EVAL = "mtlcore.trainers.cli.eval"
TAG = "mtlcore.trainers.cli.tag"
COMPILES = "mtlcore.benchmarks.compiles"

# For tagging runs that test the process contract (kill and resume, preemption, model
# directory and evaluation guards) or what the task set does around the network (modes,
# columns, evaluation, export), not the trunk or the compiler: the conv trunk without XLA
# traces in about half the time of the default BiLSTM under XLA. The default path keeps its
# own tests: bitwise determinism (test_reliability), the real-data smoke run
# (test_conll_binaries), XLA against plain steps (test_tagger), the replica checks.
QUICK_TAGGER = ["--trunk=conv", "--noxla"]


def run_binary(module, *args, stdin=None, text=True, timeout=900, env=None):
  """Runs `python -m module args...`; returns the CompletedProcess (text mode unless told).
  `env`: variables to set (or, with value None, to remove) on top of this process's."""
  env = {k: v for k, v in dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", **(env or {})).items()
         if v is not None}
  return subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True,
                        text=text, timeout=timeout, env=env, check=False)


def error_line(result):
  """The one error line a failed binary printed, after asserting there was no traceback."""
  assert result.returncode != 0, result.stderr
  assert "Traceback" not in result.stderr, result.stderr
  lines = [l for l in result.stderr.splitlines() if ": error: " in l]
  assert len(lines) == 1, result.stderr
  return lines[0]


def popen_binary(module, *args):
  """Starts `python -m module args...` in the background, output piped as text."""
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  return subprocess.Popen([sys.executable, "-m", module, *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc, timeout=300):
  """Polls `predicate` until it holds; fails if `proc` exits first or time runs out."""
  deadline = time.time() + timeout
  while not predicate():
    assert proc.poll() is None, proc.communicate()[1]
    assert time.time() < deadline, "timed out"
    time.sleep(0.05)


def kill_at_checkpoint_then_resume(args, model_dir, step):
  """Starts mtl-train with `args`, SIGKILLs it once its checkpoint at `step` is written, and
  runs the same command again; returns the second run's CompletedProcess."""
  proc = popen_binary(TRAIN, *args)
  wait_for(lambda: (model_dir / "checkpoints" / f"ckpt-{step}.index").exists(), proc)
  proc.kill()
  proc.wait()
  return run_binary(TRAIN, *args)


def run_in_process(module, *args, stdin=""):
  """Runs a binary's console entry point in this process, as `python -m module args...`
  would (flags parsed afresh, SystemExit caught); returns a CompletedProcess. Much cheaper
  than run_binary (no TensorFlow start-up); keep subprocesses for the process contract
  (signals, locks, exit while a thread is blocked)."""
  import contextlib  # pylint: disable=g-import-not-at-top
  import importlib  # pylint: disable=g-import-not-at-top
  import io  # pylint: disable=g-import-not-at-top

  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl import logging  # pylint: disable=g-import-not-at-top
  binary = importlib.import_module(module)
  handler = logging.get_absl_handler().python_handler
  flags.FLAGS.unparse_flags()
  logging.set_verbosity(logging.INFO)  # A new process logs INFO; unparse_flags resets it.
  stdout, stderr = io.StringIO(), io.StringIO()
  code = 0
  old_argv, old_stdin, old_stream = sys.argv, sys.stdin, handler.stream
  handler.stream = stderr  # absl's log lines, as a subprocess's stderr would hold them.
  sys.argv, sys.stdin = [module, *args], io.TextIOWrapper(io.BytesIO(
      stdin.encode("utf-8") if isinstance(stdin, str) else stdin), encoding="utf-8")
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      try:
        binary.console_main()
      except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  finally:
    # What the run left in reference cycles (its trainer, datasets, iterators) goes now, in
    # eager mode, not at a collection inside a later test's tracing, where an iterator's
    # destructor can wait forever for its pipeline threads.
    import gc  # pylint: disable=g-import-not-at-top
    gc.collect()
    sys.argv, sys.stdin, handler.stream = old_argv, old_stdin, old_stream
    flags.FLAGS.unparse_flags()
    config = sys.modules.get("tensorflow.python.framework.config")
    if config is not None and config.is_op_determinism_enabled():  # --deterministic's, global.
      config.disable_op_determinism()
  return subprocess.CompletedProcess([module, *args], code, stdout.getvalue(),
                                     stderr.getvalue())


def checkpoint_state(model_dir):
  """Every variable of the latest checkpoint in `model_dir`/checkpoints (weights, slots,
  counters, generators), by key."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(model_dir / "checkpoints")))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.endswith("VARIABLE_VALUE") and not k.startswith("save_counter")}
