"""The pipeline's promise to XLA: alternating training compiles (tasks x buckets) programs and
never compiles or traces again after warm-up. Counted from XLA's own module dumps, in a fresh
process (XLA reads its flags at the first compilation), without the suite's persistent XLA
cache (conftest.py): a program loaded from it is not compiled, so XLA would not dump it."""

import json
import os

from tests.binaries import COMPILES, run_binary
from tests.fixtures import write_dataset


def test_alternating_training_compiles_tasks_times_buckets_then_nothing(tmp_path, monkeypatch):
  monkeypatch.setenv("TF_XLA_FLAGS", " ".join(
      f for f in os.environ.get("TF_XLA_FLAGS", "").split()
      if not f.startswith("--tf_xla_persistent_cache_directory")))
  data_dir = write_dataset(tmp_path / "data", train=200, test=20)
  output = tmp_path / "compiles.json"
  result = run_binary(COMPILES, f"--data_dir={data_dir}", "--hidden_size=16",
                      "--trunk=conv", "--batch_size=8", "--buckets=8,16",
                      f"--output_json={output}")
  assert result.returncode == 0, result.stderr
  report = json.loads(output.read_text())
  check = report["after_check"]
  # The synthetic sentences (3 to 25 tokens; longer than 16 split) reach both buckets for the
  # three tasks (the default trains the language-model task too).
  tasks = ("pos", "chunk", "lm")
  assert {t: len(s) for t, s in check["shapes_fed"].items()} == {t: 2 for t in tasks}
  assert check["compiles"] == {t: 2 for t in tasks}
  assert report["total_compiles"] == report["tasks_x_buckets"] == 6
  assert check["traces"] == {t: 1 for t in tasks}
  assert report["compiles_equal_shapes_fed"] and report["no_retraces"]
  assert "XLA compilations of the alternating step functions: 6" in result.stdout
