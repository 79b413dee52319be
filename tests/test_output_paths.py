"""The binaries' output paths (--export_dir, --output): a user's file or directory is refused
in one line before any work and left bitwise as it was; a run replaces its own earlier export,
another run's only with --overwrite. In-process (tests.binaries.run_in_process)."""

import pytest

from tests.binaries import EVAL, TRAIN, error_line, run_in_process
from tests.test_files import tree_digest

TOY = ["--task_set=toy", "--train_steps=20", "--steps_per_loop=10", "--nosummaries"]


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("toy")
  result = run_in_process(TRAIN, *TOY, f"--model_dir={root / 'm'}",
                          f"--export_dir={root / 'export'}")
  assert result.returncode == 0, result.stderr
  return root


def _users_tree(root):
  mine = root / "mine"
  mine.mkdir()
  (mine / "thesis.tex").write_text("years of work")
  (root / "file").write_text("a file")
  return mine, root / "file"


@pytest.mark.parametrize("flag", ["--export_dir", "--overwrite --export_dir"])
def test_train_refuses_a_users_directory_or_file_before_training(tmp_path, flag):
  mine, file = _users_tree(tmp_path)
  before = tree_digest(tmp_path)
  extra = ["--overwrite"] if "--overwrite" in flag else []
  for target, words in ((mine, "holds files mtlcore did not write"),
                        (file, "is a file, not a directory")):
    result = run_in_process(TRAIN, *TOY, *extra, f"--model_dir={tmp_path / 'm'}",
                            f"--export_dir={target}")
    assert f"--export_dir={target} {words}" in error_line(result)
  assert tree_digest(tmp_path) == before  # Not even the model directory was made.


def test_a_rerun_replaces_its_own_export_and_another_runs_needs_overwrite(toy_run):
  export = toy_run / "export"
  again = run_in_process(TRAIN, *TOY, "--train_steps=30", f"--model_dir={toy_run / 'm'}",
                         f"--export_dir={export}")
  assert again.returncode == 0, again.stderr
  assert (export / "saved_model.pb").exists() and "Exported the model" in again.stderr
  other = run_in_process(TRAIN, *TOY, f"--model_dir={toy_run / 'other'}",
                         f"--export_dir={export}")
  assert "holds an earlier export from " in error_line(other)
  assert "pass --overwrite" in error_line(other)
  assert not (toy_run / "other").exists()
  replaced = run_in_process(TRAIN, *TOY, "--overwrite", f"--model_dir={toy_run / 'other'}",
                            f"--export_dir={export}")
  assert replaced.returncode == 0, replaced.stderr
  assert str(toy_run / "other") in (export / ".mtlcore-output").read_text()
  leftovers = [p.name for p in toy_run.iterdir() if p.name.startswith(".")]
  assert not leftovers


def test_eval_refuses_a_users_directory_or_file_as_output(toy_run, tmp_path):
  mine, file = _users_tree(tmp_path)
  before = tree_digest(tmp_path)
  for target, words in ((mine, "holds files mtlcore did not write"),
                        (file, "is a file, not a directory")):
    result = run_in_process(EVAL, f"--model_dir={toy_run / 'm'}", f"--output={target}")
    assert f"--output={target} {words}" in error_line(result)
  assert tree_digest(tmp_path) == before
