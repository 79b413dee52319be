"""The binaries start and stop like tools: --help/--helpshort list their own flags in groups
and exit 0; flags are parsed and checked before TensorFlow is imported, so a bad flag is one
line without TensorFlow's start-up; Ctrl-C at any moment is one line or a checkpointed stop."""

import signal
import subprocess
import sys
import time

import pytest

from mtlcore.trainers.cli import flags as run_flags
from tests.binaries import EVAL, TAG, TRAIN, error_line, popen_binary

_NO_TENSORFLOW = """
import importlib, runpy, sys
sys.argv = ["{program}", *{args!r}]
module, _, entry = "{module}".partition(":")
try:
  if entry:  # A console script's entry point, as pyproject.toml names it.
    getattr(importlib.import_module(module), entry)()
  else:
    runpy.run_module(module, run_name="__main__")
except SystemExit as e:
  code = e.code
print("tensorflow" in sys.modules, code)
"""
# The benchmark binaries' console scripts (pyproject.toml).
BENCH, COMPILES = "mtlcore.benchmarks.cli:bench_main", "mtlcore.benchmarks.cli:compiles_main"


def _imports_tensorflow(module, *args):
  """(whether the binary imported TensorFlow, its exit code, stdout, stderr); `module` is run
  as `python -m module`, or, as MODULE:FUNCTION, called as its console script."""
  code = _NO_TENSORFLOW.format(program=module, module=module, args=list(args))
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
  *printed, last = result.stdout.rstrip("\n").split("\n")  # The last line: ours.
  imported, exit_code = last.split()
  return imported == "True", int(exit_code), "\n".join(printed), result.stderr


@pytest.mark.parametrize("module, args, words", [
    (TRAIN, ["--bogus=1"], "Unknown command line flag 'bogus'"),
    (TRAIN, ["--batch_size=0", "--model_dir=m"], "--batch_size must be positive, got 0"),
    (TRAIN, ["--mode=joint", "--sampler=uniform"], "--sampler applies to --mode=alternate"),
    (EVAL, ["--learning_rate=0.1"], "--learning_rate does not apply to mtl-eval"),
    (EVAL, ["--model_dir=m", "--output=/dev/null"], "is a file, not a directory"),
    (TAG, ["--batch_size=-1", "--model=x"], "--batch_size must be positive"),
    (BENCH, ["--stepz=3"], "Unknown command line flag 'stepz'"),
    (BENCH, ["--steps=0"], "--steps must be positive, got 0"),
    (BENCH, ["--trunks=gru"], "--trunks: unknown ['gru']"),
    (BENCH, ["--task_counts=2,x"], "--task_counts: 'x' is not a number of tasks"),
    (BENCH, ["--representation_only"], "--representation_only applies to "
                                       "--representation_gradients"),
    (BENCH, ["--architecture_task_set=conll2000"], "applies to --architectures; give them"),
    (BENCH, ["--architectures=hard", "--architecture_task_set=conll2000", "--task_counts=4"],
     "the CoNLL-2000 tagger has its two tasks"),
    (COMPILES, ["--task_set=toy"], "measures the conll2000 task set"),
    (TRAIN, ["--hidden_size=wide"], "flag --hidden_size=wide: invalid literal"),
    (TRAIN, ["--task_set=toy", "--trunk=conv"], "Unknown command line flag 'trunk'"),
    (TRAIN, ["--task_set=nope"], "--task_set=nope is neither an installed"),
    (TRAIN, ["--buckets=8,x"], "--buckets must be integers"),
    (TRAIN, ["--model_dir=m", "--num_logical_cpus=2"], "only makes sense with --strategy"),
    (TRAIN, ["--model_dir=m", "--strategy=mirrored", "--num_logical_cpus=2", "--batch_size=7"],
     "--batch_size=7 must be a multiple of the 2 replicas"),
    (TRAIN, ["--model_dir=m", "--strategy=multi_worker"],
     "multi_worker needs TF_CONFIG"),
])
def test_a_bad_flag_is_one_line_before_tensorflow_is_imported(module, args, words):
  imported, code, _, stderr = _imports_tensorflow(module, *args)
  assert code == 1 and not imported, stderr
  lines = [l for l in stderr.splitlines() if ": error: " in l]
  assert len(lines) == 1 and words in lines[0] and "Traceback" not in stderr, stderr


@pytest.mark.parametrize("module, args, listed, absent", [
    (TRAIN, ["--helpshort"], ["--mode", "--model_dir", "--task_set", "--trunk", "--lm_vocab",
                              "Options of --task_set=conll2000"], []),
    (TRAIN, ["--task_set=toy", "--helpshort"], ["--hidden_size (default: 20)", "--num_examples",
                                               "--learning_rate (default: 0.01)"], ["--trunk"]),
    (TRAIN, ["--help"], ["--export_dir", "--overwrite", "--weighting"], []),
    (EVAL, ["--helpshort"], ["--split", "--output", "--tasks"], ["--learning_rate"]),
    (EVAL, ["--task_set=tagging", "--helpshort"], ["--test", "--dev"], ["--learning_rate"]),
    (TAG, ["-h"], ["--model", "--batch_size"], []),
    (BENCH, ["--helpshort"], ["--quick", "--trunks", "--task_counts", "--output_json",
                               "--batch_size"], []),
    (COMPILES, ["--helpshort"], ["--output_json", "--data_dir", "--trunk"], []),
])
def test_help_lists_the_binarys_own_flags_and_exits_zero(module, args, listed, absent):
  imported, code, shown, _ = _imports_tensorflow(module, *args)
  assert code == 0 and not imported
  assert all(f"\n{name}" in shown or f"  {name}" in shown for name in listed), shown
  assert not any(f"  {name} " in shown or f"  {name}\n" in shown for name in absent), shown


def test_every_run_flag_is_in_exactly_one_help_group():
  grouped = [name for _, names in run_flags.HELP_GROUPS for name in names]
  defined = [f.name for f in run_flags.FLAGS.get_flags_for_module(run_flags.__name__)]
  assert sorted(grouped) == sorted(defined)


def test_ctrl_c_soon_after_start_is_one_line_or_a_checkpointed_stop(tmp_path):
  proc = popen_binary(TRAIN, "--task_set=toy", f"--model_dir={tmp_path}",
                      "--train_steps=100000000", "--checkpoint_every=100000000")
  time.sleep(1.5)  # In TensorFlow's start-up on this machine kind; later, it still holds.
  proc.send_signal(signal.SIGINT)
  _, stderr = proc.communicate(timeout=120)
  assert "Traceback" not in stderr, stderr
  if proc.returncode == 0:
    assert "Stopping at step" in stderr
  else:
    assert proc.returncode == 130
    assert "interrupted by SIGINT" in error_line(
        subprocess.CompletedProcess([], proc.returncode, "", stderr))


def test_every_bench_flag_is_in_its_help_group():
  from mtlcore.benchmarks import cli  # pylint: disable=g-import-not-at-top
  defined = [f.name for f in cli.FLAGS.get_flags_for_module(cli.__name__)]
  assert sorted(cli.BENCH_FLAGS) == sorted(defined)
