"""How a study trains: one `mtl-train` subprocess per run (what a user gets), reused when a
finished run of the same flags is on disk; which code versions produced a table; a mean."""

import json
import os
import statistics
import subprocess
import sys
import time

from mtlcore.errors import ConfigError
from mtlcore.files import write_json_atomically
from mtlcore.trainers.model_dir import ModelDir


def run_mtl_train(model_dir, args):
  """Trains one run as an `mtl-train` subprocess (what a user gets) into `model_dir`, with
  the further flags `args`. Returns (its metrics.json, wall seconds); a failed run is a
  ConfigError naming the directory and the run's last line on stderr."""
  start = time.time()
  done = subprocess.run([sys.executable, "-m", "mtlcore.trainers.cli.train",
                         f"--model_dir={model_dir}", *args],
                        capture_output=True, text=True, check=False)
  if done.returncode != 0:
    lines = done.stderr.strip().splitlines() or ["(no output)"]
    raise ConfigError(f"run {model_dir} failed: {lines[-1]}")
  seconds = time.time() - start
  with open(ModelDir(model_dir).metrics_file, encoding="utf-8") as f:
    return json.load(f), seconds


def finished_run(model_dir, record, expected):
  """{"metrics", "seconds"} of the run an earlier invocation finished in `model_dir` whose
  metrics.json holds, under `record`, every item of `expected` (e.g. the same train steps or
  the same mtl-train flags), else None."""
  metrics_file = ModelDir(model_dir).metrics_file
  if not os.path.exists(metrics_file):
    return None
  with open(metrics_file, encoding="utf-8") as f:
    saved = json.load(f)
  held = saved.get(record, {})
  if any(held.get(key) != value for key, value in expected.items()):
    return None
  return {"metrics": saved, "seconds": held["seconds"], "code": held.get("code", UNRECORDED)}


def train_once(model_dir, args, record, expected):
  """run_mtl_train(model_dir, args) unless finished_run(model_dir, record, expected) finds
  that run already done: a study interrupted half-way resumes where it stopped. The run's
  wall seconds and `expected` are kept in its metrics.json under `record`; a directory that
  holds an unfinished or different run is a ConfigError (the run is not overwritten). The
  code that trained it (code_version()) is kept too, so a report can say which code its runs
  came from; reuse does not depend on it."""
  done = finished_run(model_dir, record, expected)
  if done:
    return done
  if os.path.exists(model_dir):
    raise ConfigError(f"{model_dir} holds an unfinished or different run; remove it to rerun.")
  code = code_version()
  metrics, seconds = run_mtl_train(model_dir, args)
  metrics[record] = {**expected, "seconds": seconds, "code": code}
  write_json_atomically(ModelDir(model_dir).metrics_file, metrics, indent=1)
  return {"metrics": metrics, "seconds": seconds, "code": code}


UNRECORDED = "unrecorded"  # A run trained before studies kept their code version.


def code_version():
  """The commit of the mtlcore checkout this process imports (`git describe --always
  --dirty`: e.g. "806520f", or "806520f-dirty" with uncommitted changes), or "unknown" when
  it is not a git checkout (an installed wheel)."""
  try:
    done = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "describe",
                           "--always", "--dirty", "--abbrev=7"],
                          capture_output=True, text=True, check=False)
  except OSError:  # No git on this machine.
    return "unknown"
  return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "unknown"


def code_versions(results):
  """"806520f (12 runs), unrecorded (3 runs)": the code that trained `results` (each a
  train_once() or finished_run() result), the most runs first."""
  counts = {}
  for result in results:
    counts[result["code"]] = counts.get(result["code"], 0) + 1
  return ", ".join(f"{code} ({n} run{'s' if n > 1 else ''})"
                   for code, n in sorted(counts.items(), key=lambda item: -item[1]))


def mean_std(values):
  """"mean ± std" of `values` to 2 decimals (std 0 for one value), "-" for none."""
  if not values:
    return "-"
  std = statistics.stdev(values) if len(values) > 1 else 0.0
  return f"{statistics.mean(values):.2f} ± {std:.2f}"


class SavedRuns:
  """In-process runs kept in a JSON file as each finishes, so that a study stopped half-way
  (this machine's memory-map limit, a non-finite run, a kill) resumes where it stopped:
  `get(key, make)` returns the saved result of `key`, or runs `make()` and saves it at once
  (written to a temporary file, then renamed). Without a path nothing is saved."""

  def __init__(self, path):
    self.path, self.results = path, {}
    if path and os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        self.results = json.load(f)

  def get(self, key, make):
    if key not in self.results:
      self.results[key] = make()
      if self.path:
        write_json_atomically(self.path, self.results)
    return self.results[key]
