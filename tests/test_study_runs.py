"""A study's runs are trained once: a finished run with the same settings is reused, and a
directory holding anything else is refused, never overwritten (benchmarks/report.py)."""

import json
import os

import pytest

from mtlcore.benchmarks import report
from mtlcore.errors import ConfigError


@pytest.fixture(name="trained")
def fake_mtl_train(monkeypatch):
  """Replaces the mtl-train subprocess by one that writes a metrics.json; returns its calls."""
  calls = []

  def run(model_dir, args):
    os.makedirs(model_dir)
    with open(os.path.join(model_dir, "metrics.json"), "w", encoding="utf-8") as f:
      json.dump({"test": {"chunk/f1": 91.0}}, f)
    calls.append(args)
    return {"test": {"chunk/f1": 91.0}}, 12.5

  monkeypatch.setattr(report, "run_mtl_train", run)
  return calls


def test_a_finished_run_is_reused_with_its_own_wall_time(tmp_path, trained):
  run_dir = str(tmp_path / "default_seed0")
  first = report.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  again = report.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  assert trained == [["--seed=0"]]  # Trained once.
  assert first == again and again["seconds"] == 12.5
  assert again["metrics"]["quality"] == {"args": ["--seed=0"], "seconds": 12.5}


def test_a_directory_with_another_or_an_unfinished_run_is_refused(tmp_path, trained):
  run_dir = str(tmp_path / "default_seed0")
  report.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    before = f.read()
  with pytest.raises(ConfigError, match="default_seed0 holds an unfinished or different run"):
    report.train_once(run_dir, ["--seed=0", "--lm_vocab=0"], "quality",
                      {"args": ["--seed=0", "--lm_vocab=0"]})
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    assert f.read() == before  # Not overwritten.
  unfinished = tmp_path / "cut_off_seed1"
  (unfinished / "checkpoints").mkdir(parents=True)
  with pytest.raises(ConfigError, match="cut_off_seed1 holds an unfinished"):
    report.train_once(str(unfinished), ["--seed=1"], "quality", {"args": ["--seed=1"]})
  assert len(trained) == 1
