"""Writing files so that a reader never sees half of one."""

import json
import os
import shutil
import tempfile


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


def replace_directory(staging, target):
  """Puts the complete directory `staging` in place of `target` (which may not exist): the
  old one is renamed aside, the new one renamed in, the old one deleted. Returns target."""
  if os.path.exists(target):
    old = staging + ".old"
    os.replace(target, old)
    os.replace(staging, target)
    shutil.rmtree(old)
  else:
    os.replace(staging, target)
  return target
