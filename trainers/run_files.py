"""The files mtl-train keeps in --model_dir besides checkpoints, written atomically.

  config.json    what defines the run: task set, mode, tasks, seed and the model's sizes.
                 A resumed run must match it; mtl-eval rebuilds the model from it.
  vocab.json     the vocabularies (mtlcore.data.vocab), built once from the training split.
  metrics.json   dev and test metrics of the best-on-dev checkpoint, after training.
"""

import json
import os
import tempfile

from mtlcore.errors import ConfigError, DataError


def write_json(path, data):
  """Writes `data` as JSON to `path` via a temporary file and an atomic rename."""
  directory = os.path.dirname(os.path.abspath(path))
  fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp.", suffix=".json")
  try:
    with os.fdopen(fd, "w", encoding="utf-8") as f:
      json.dump(data, f, indent=2, sort_keys=True)
      f.write("\n")
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.remove(tmp)
    raise


def read_json(path):
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    raise ConfigError(f"{path} does not exist; is this a model directory written by "
                      f"mtl-train?") from None
  except (ValueError, UnicodeDecodeError) as e:
    raise DataError(path, None, f"not valid JSON ({e}).") from None


def prepare_model_dir(model_dir):
  """Creates model_dir if needed and checks that it is writable, before any training."""
  try:
    os.makedirs(model_dir, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=model_dir, prefix=".write-test.")
    os.close(fd)
    os.remove(probe)
  except OSError as e:
    raise ConfigError(f"--model_dir={model_dir} is not a writable directory "
                      f"({e.strerror}).") from None


def check_or_write_config(model_dir, config, must_match):
  """Writes config.json on the first run; on a resumed run, insists that the keys in
  `must_match` are unchanged (a checkpoint cannot be restored into another shape)."""
  path = os.path.join(model_dir, "config.json")
  if not os.path.exists(path):
    write_json(path, config)
    return config
  saved = read_json(path)
  changed = [k for k in must_match if saved.get(k) != config.get(k)]
  if changed:
    details = ", ".join(f"{k}: {saved.get(k)!r} -> {config.get(k)!r}" for k in changed)
    raise ConfigError(f"--model_dir={model_dir} holds a run with different settings "
                      f"({details}); use a new --model_dir or the original flags.")
  return saved
