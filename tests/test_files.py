"""mtlcore.files: an output directory never replaces what mtlcore did not write, keeps the
mode of what it replaces, and the next write cleans what a killed write left behind."""

import hashlib
import json
import os
import subprocess
import sys

import pytest

from mtlcore import files
from mtlcore.errors import ConfigError


def tree_digest(root):
  """{relative path: (mode, sha256 of the content or 'dir')} of everything under root."""
  digest = {}
  for directory, dirnames, filenames in os.walk(root):
    for name in dirnames + filenames:
      path = os.path.join(directory, name)
      content = "dir" if os.path.isdir(path) else hashlib.sha256(
          open(path, "rb").read()).hexdigest()
      digest[os.path.relpath(path, root)] = (os.stat(path).st_mode, content)
  digest["."] = (os.stat(root).st_mode, "dir")
  return digest


def _writer(text):
  def write(directory):
    with open(os.path.join(directory, "out.txt"), "w", encoding="utf-8") as f:
      f.write(text)
  return write


def _write(path, text="new", **rules):
  return files.write_output_directory(str(path), _writer(text), kind="export", flag="--out",
                                      **{"source": "/runs/a", **rules})


def test_a_directory_of_the_users_files_is_refused_and_left_untouched(tmp_path):
  target = tmp_path / "mine"
  (target / "sub").mkdir(parents=True)
  (target / "notes.txt").write_text("keep me")
  (target / "sub" / "data.bin").write_bytes(b"\x00\x01")
  os.chmod(target, 0o751)
  before = tree_digest(tmp_path)
  for overwrite in (False, True):
    with pytest.raises(ConfigError, match=r"^--out=.*mine holds files mtlcore did not write"):
      _write(target, overwrite=overwrite)
  assert tree_digest(tmp_path) == before


def test_a_regular_file_is_refused_and_not_moved(tmp_path):
  target = tmp_path / "export"
  target.write_text("a user's file")
  before = tree_digest(tmp_path)
  with pytest.raises(ConfigError, match="is a file, not a directory"):
    _write(target)
  assert tree_digest(tmp_path) == before


def test_a_new_path_gets_the_umask_mode_and_an_empty_directory_keeps_its_own(tmp_path):
  _write(tmp_path / "new")
  umask = os.umask(0)
  os.umask(umask)
  assert os.stat(tmp_path / "new").st_mode & 0o777 == 0o777 & ~umask
  assert (tmp_path / "new" / "out.txt").read_text() == "new"
  assert json.loads((tmp_path / "new" / files.MARKER).read_text()) == {
      "kind": "export", "source": "/runs/a"}
  empty = tmp_path / "empty"
  empty.mkdir()
  os.chmod(empty, 0o750)
  _write(empty)
  assert os.stat(empty).st_mode & 0o777 == 0o750
  assert sorted(os.listdir(tmp_path)) == ["empty", "new"]  # No staging left beside them.


def test_an_earlier_output_is_replaced_from_its_source_and_otherwise_only_with_overwrite(
    tmp_path):
  target = tmp_path / "export"
  _write(target, "first")
  os.chmod(target, 0o700)
  _write(target, "second")  # The same source: a rerun replaces its own output.
  assert (target / "out.txt").read_text() == "second"
  assert os.stat(target).st_mode & 0o777 == 0o700
  with pytest.raises(ConfigError, match="holds an earlier export from /runs/a; pass --overwrite"):
    _write(target, "third", source="/runs/b")
  assert (target / "out.txt").read_text() == "second"
  _write(target, "third", source="/runs/b", overwrite=True)
  assert (target / "out.txt").read_text() == "third"
  with pytest.raises(ConfigError, match="holds mtlcore's export, not its predictions"):
    files.write_output_directory(str(target), _writer("x"), kind="predictions",
                                 source="/runs/b", overwrite=True, flag="--out")


def test_a_savedmodel_without_marker_is_an_earlier_export_replaced_only_with_overwrite(
    tmp_path):
  target = tmp_path / "export"
  (target / "variables").mkdir(parents=True)
  (target / "saved_model.pb").write_bytes(b"pb")
  with pytest.raises(ConfigError, match="holds an earlier export of another run"):
    _write(target)
  _write(target, overwrite=True)
  assert sorted(os.listdir(target)) == [files.MARKER, "out.txt"]


def test_a_failed_write_leaves_the_earlier_output_and_no_staging(tmp_path):
  target = tmp_path / "export"
  _write(target, "good")

  def fail(directory):
    _writer("half")(directory)
    raise OSError(28, "No space left on device")

  with pytest.raises(OSError):
    files.write_output_directory(str(target), fail, kind="export", source="/runs/a")
  assert (target / "out.txt").read_text() == "good"
  assert os.listdir(tmp_path) == ["export"]


def _dead_pid():
  process = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                           capture_output=True, text=True, check=True)
  return int(process.stdout)


def test_the_next_write_cleans_a_killed_writes_staging_and_restores_a_moved_aside_output(
    tmp_path):
  pid = _dead_pid()
  staging = tmp_path / f".export.mtlcore-staging-{pid}-abc123"
  staging.mkdir()
  (staging / "saved_model.pb").write_bytes(b"half")
  nested = tmp_path / f"..export.mtlcore-staging-1-x.mtlcore-staging-{pid}-def"
  nested.mkdir()
  old = tmp_path / f".other.mtlcore-old-{pid}-ghi"  # Killed between its two renames.
  old.mkdir()
  (old / "out.txt").write_text("the previous output")
  alive = tmp_path / f".export.mtlcore-staging-{os.getpid()}-jkl"  # A live writer's.
  alive.mkdir()
  _write(tmp_path / "export")
  assert sorted(os.listdir(tmp_path)) == sorted(["export", "other", alive.name])
  assert (tmp_path / "other" / "out.txt").read_text() == "the previous output"
