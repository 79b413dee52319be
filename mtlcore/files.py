"""Writing files so that a reader never sees half of one, and a user's files are never lost.

An output directory (an export, mtl-eval's predictions) is written in full into a staging
directory beside it and then moved into place (`write_output_directory`). The place it goes
to must be free: nothing there, an empty directory, or an earlier output of the same kind
that mtlcore wrote, recognised by the marker file `.mtlcore-output` it leaves inside. The
marker records the kind and the source (the model directory the output came from): an output
from the same source is replaced (rerunning a command redoes its output), one from another
source only when the caller says `overwrite`. A regular file, a directory of another kind or
one holding files mtlcore did not write is refused with one line, and nothing of it is moved,
changed or deleted. A replaced directory keeps its permission bits.

Staging and replaced directories are named `.NAME.mtlcore-staging-PID-X` and
`.NAME.mtlcore-old-PID-X` beside NAME. Those of a process that is no longer alive (killed
mid-write) are removed by the next write into the same parent directory; an old copy whose
replacement never arrived is first moved back into place.
"""

import json
import os
import re
import shutil
import tempfile

from mtlcore.errors import ConfigError

MARKER = ".mtlcore-output"
_LEFTOVER = re.compile(r"^\.(?P<name>.+)\.mtlcore-(?P<what>staging|old)-(?P<pid>\d+)-[^.]+$")
# The entries of a SavedModel: an export written before the marker existed.
_SAVED_MODEL_ENTRIES = {"saved_model.pb", "variables", "assets", "fingerprint.pb"}


def write_json_atomically(path, data, **dump_options):
  """Writes `data` as JSON to `path` via a temporary file beside it and an atomic rename; on
  any failure the temporary file is removed and `path` is left as it was.

  Args:
    path: the file to write.
    data: a JSON-able object.
    **dump_options: passed to json.dump (e.g. indent=2, sort_keys=True, ensure_ascii=False).
  """
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp.", suffix=".json")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(data, f, **dump_options)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def _read_marker(path):
  """The marker of directory `path` as a dict, {} for a SavedModel without one (an export
  of earlier mtlcore versions), or None when it holds no output of mtlcore's."""
  try:
    with open(os.path.join(path, MARKER), encoding="utf-8") as f:
      marker = json.load(f)
    return marker if isinstance(marker, dict) else None
  except FileNotFoundError:
    entries = set(os.listdir(path))
    if "saved_model.pb" in entries and entries <= _SAVED_MODEL_ENTRIES:
      return {"kind": "export", "source": None, "legacy": True}
    return None
  except (OSError, ValueError):
    return None


def check_output_directory(path, *, kind, source=None, overwrite=False, flag="the output"):
  """Raises ConfigError unless an output of `kind` from `source` may be written at `path`.

  Args:
    path: where the output directory goes.
    kind: what it is, e.g. "export" or "predictions".
    source: where it comes from (e.g. the model directory's absolute path), or None.
    overwrite: whether an earlier output of the same kind from another source may be replaced.
    flag: how the user named `path`, for the error (e.g. "--export_dir").
  """
  where = f"{flag}={path}"
  if os.path.lexists(path) and not os.path.isdir(path):
    raise ConfigError(f"{where} is a file, not a directory; mtlcore leaves it as it is: give "
                      f"the path of a new or empty directory.")
  if not os.path.isdir(path):
    return
  try:
    entries = os.listdir(path)
  except OSError as e:
    raise ConfigError(f"{where} cannot be read ({e.strerror}).") from None
  if not entries:
    return
  marker = _read_marker(path)
  if marker is None:
    raise ConfigError(f"{where} holds files mtlcore did not write; mtlcore never replaces "
                      f"them: give a new or empty directory.")
  if marker.get("kind") != kind:
    raise ConfigError(f"{where} holds mtlcore's {marker.get('kind')}, not its {kind}; give "
                      f"another directory.")
  if marker.get("source") != source and not overwrite:
    origin = f"from {marker['source']}" if marker.get("source") else "of another run"
    raise ConfigError(f"{where} holds an earlier {kind} {origin}; pass --overwrite to replace "
                      f"it, or give another directory.")


def _alive(pid):
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def clean_leftovers(parent):
  """Removes the staging and old directories in `parent` left by processes that died
  mid-write; an old copy whose target is missing is moved back into place first."""
  try:
    names = os.listdir(parent)
  except OSError:
    return
  for name in sorted(names, key=lambda n: "staging" not in n):  # Staging first.
    match = _LEFTOVER.match(name)
    if not match or _alive(int(match["pid"])):
      continue
    leftover, target = os.path.join(parent, name), os.path.join(parent, match["name"])
    if match["what"] == "old" and not os.path.lexists(target):
      os.replace(leftover, target)
    else:
      shutil.rmtree(leftover, ignore_errors=True)


def _default_mode():
  umask = os.umask(0)
  os.umask(umask)
  return 0o777 & ~umask


def write_output_directory(path, write, *, kind, source=None, overwrite=False,
                           flag="the output"):
  """Writes directory `path` as `write(directory)` fills a staging directory, then moves it
  into place, under the rules of check_output_directory. Returns path.

  If `write` fails, the staging directory is removed and `path` is left as it was. A
  previous output at `path` is moved aside, the new one moved in, the old one deleted.
  """
  path = os.path.normpath(path)
  parent = os.path.dirname(os.path.abspath(path))
  name = os.path.basename(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  clean_leftovers(parent)
  check_output_directory(path, kind=kind, source=source, overwrite=overwrite, flag=flag)
  mode = os.stat(path).st_mode & 0o7777 if os.path.isdir(path) else _default_mode()
  staging = tempfile.mkdtemp(dir=parent, prefix=f".{name}.mtlcore-staging-{os.getpid()}-")
  try:
    write(staging)
    with open(os.path.join(staging, MARKER), "w", encoding="utf-8") as f:
      json.dump({"kind": kind, "source": source}, f)
    os.chmod(staging, mode)
    check_output_directory(path, kind=kind, source=source, overwrite=overwrite, flag=flag)
    if os.path.isdir(path):
      old = tempfile.mkdtemp(dir=parent, prefix=f".{name}.mtlcore-old-{os.getpid()}-")
      os.replace(path, old)  # Over the empty directory mkdtemp made.
      os.replace(staging, path)
      shutil.rmtree(old)
    else:
      os.replace(staging, path)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise
  return path
