"""The checkpoint files are the truth: a lost or damaged `checkpoint` state file never restarts
a run from step 0 or rewrites a checkpoint; a damaged checkpoint is skipped before any value
is assigned; mtl-eval falls back from a damaged best/ and refuses another model's checkpoints.
In-process runs of the toy task set (tests.binaries.run_in_process)."""

import json
import shutil

import pytest
import tensorflow as tf

from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TRAIN, error_line, run_in_process
from tests.test_files import tree_digest

TOY = ["--task_set=toy", "--steps_per_loop=10", "--checkpoint_every=10", "--nosummaries",
       "--keep_checkpoints=3", "--log_every=10"]
STEP = "trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A toy run checkpointed at steps 40, 50 and 60, copied afresh for each test."""
  root = tmp_path_factory.mktemp("toy")
  result = run_in_process(TRAIN, *TOY, "--train_steps=60", f"--model_dir={root / 'm'}")
  assert result.returncode == 0, result.stderr
  return root / "m"


@pytest.fixture
def model_dir(trained, tmp_path):
  shutil.copytree(trained, tmp_path / "m")
  return tmp_path / "m"


TAGGER = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--lm_vocab=0",
          "--buckets=16,32", "--steps_per_loop=10", "--nosummaries", *QUICK_TAGGER]


@pytest.fixture(scope="module")
def tagger_run(tmp_path_factory):
  """A tiny CoNLL-2000 run on synthetic data with best/ (at step 10 or 20) and checkpoints/."""
  root = tmp_path_factory.mktemp("tagger")
  data = fixtures.write_dataset(root / "data", train=40, test=10)
  result = run_in_process(TRAIN, *TAGGER, f"--data_dir={data}", "--train_steps=20",
                          "--eval_every=10", "--checkpoint_every=10", f"--model_dir={root / 'm'}")
  assert result.returncode == 0, result.stderr
  return root


@pytest.fixture
def tagger_dir(tagger_run, tmp_path):
  shutil.copytree(tagger_run / "m", tmp_path / "m")
  return tmp_path / "m", tagger_run / "data"


def _listed(directory):
  return [p.rsplit("/", 1)[1]
          for p in tf.train.get_checkpoint_state(str(directory)).all_model_checkpoint_paths]


def _corrupt(prefix):
  data = next(prefix.parent.glob(prefix.name + ".data-*"))
  data.write_bytes(data.read_bytes()[:40])


@pytest.mark.parametrize("damage", ["missing", "unreadable"])
def test_a_lost_state_file_resumes_from_the_newest_checkpoint_and_keeps_the_older_ones(
    model_dir, damage):
  state = model_dir / "checkpoints" / "checkpoint"
  if damage == "missing":
    state.unlink()
  else:
    state.write_bytes(b"\x00garbage{{")
  result = run_in_process(TRAIN, *TOY, "--train_steps=70", f"--model_dir={model_dir}")
  assert result.returncode == 0, result.stderr
  assert f"checkpoint is {damage}; rebuilt it from the 3 checkpoint(s)" in result.stderr
  assert "ckpt-60 at step 60" in result.stderr and "step 10/70" not in result.stderr
  # max_to_keep saw the rebuilt list: ckpt-40 went when ckpt-70 came.
  assert _listed(model_dir / "checkpoints") == ["ckpt-50", "ckpt-60", "ckpt-70"]
  assert not (model_dir / "checkpoints" / "ckpt-40.index").exists()


def test_a_state_file_behind_the_disk_and_a_damaged_newest_resume_from_the_newest_readable(
    model_dir):
  checkpoints = model_dir / "checkpoints"
  (checkpoints / "checkpoint").write_text('model_checkpoint_path: "ckpt-40"\n'
                                          'all_model_checkpoint_paths: "ckpt-40"\n')
  _corrupt(checkpoints / "ckpt-60")
  (checkpoints / "ckpt-70_temp").mkdir()  # A save killed mid-write.
  (checkpoints / "ckpt-70_temp" / "part-00000-of-00001.data").write_bytes(b"x")
  task_best = model_dir / "best" / "y1" / "ckpt-30_temp"  # A task's best (--best_per_task).
  task_best.mkdir(parents=True)
  result = run_in_process(TRAIN, *TOY, "--train_steps=60", f"--model_dir={model_dir}")
  assert result.returncode == 0, result.stderr
  assert "behind the checkpoints on disk" in result.stderr
  assert "ckpt-60 is unreadable" in result.stderr and "ckpt-50 at step 50" in result.stderr
  assert not (checkpoints / "ckpt-70_temp").exists() and not task_best.exists()
  assert int(tf.train.load_variable(str(checkpoints / "ckpt-60"), STEP)) == 60  # Rewritten
  # by training from 50, the step it stood for.


def test_no_readable_checkpoint_is_one_line_and_nothing_is_rewritten(model_dir):
  checkpoints = model_dir / "checkpoints"
  (checkpoints / "checkpoint").unlink()
  for n in (40, 50, 60):
    _corrupt(checkpoints / f"ckpt-{n}")
  before = tree_digest(checkpoints)
  result = run_in_process(TRAIN, *TOY, "--train_steps=70", f"--model_dir={model_dir}")
  line = error_line(result)
  assert "can be read (the newest, ckpt-60: " in line and "move them away to start afresh" in line
  digest = tree_digest(checkpoints)
  digest.pop("checkpoint")  # The rebuilt state file: the only change.
  assert digest == {k: v for k, v in before.items()}


def test_eval_falls_back_from_a_damaged_best_and_reads_the_disk_without_a_state_file(
    tagger_dir):
  model_dir, data = tagger_dir
  best = tf.train.latest_checkpoint(str(model_dir / "best"))
  before = tree_digest(model_dir)
  (model_dir / "best" / "checkpoint").unlink()
  plain = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}")
  assert plain.returncode == 0, plain.stderr
  assert plain.stdout.startswith(f"checkpoint {best}\n")
  _corrupt(model_dir / "best" / best.rsplit("/", 1)[1])
  fallback = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}")
  assert fallback.returncode == 0, fallback.stderr
  assert fallback.stdout.startswith(f"checkpoint {model_dir / 'checkpoints' / 'ckpt-20'}\n")
  assert "is unreadable" in fallback.stderr and "chunk/f1" in fallback.stdout
  assert set(tree_digest(model_dir)) == set(before) - {"best/checkpoint"}


def test_eval_of_checkpoints_from_another_model_is_one_line(tagger_dir):
  model_dir, data = tagger_dir
  config = json.loads((model_dir / "config.json").read_text())
  config["options"]["hidden_size"] = 7
  (model_dir / "config.json").write_text(json.dumps(config))
  line = error_line(run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}"))
  assert "holds another model than" in line and "config.json" in line


def test_a_missing_index_file_resumes_from_the_checkpoint_before(model_dir):
  (model_dir / "checkpoints" / "ckpt-60.index").unlink()
  result = run_in_process(TRAIN, *TOY, "--train_steps=60", f"--model_dir={model_dir}")
  assert result.returncode == 0, result.stderr
  assert "ckpt-60 is unreadable" in result.stderr and "ckpt-50 at step 50" in result.stderr
  assert int(tf.train.load_variable(str(model_dir / "checkpoints" / "ckpt-60"), STEP)) == 60
