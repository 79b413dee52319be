"""A study's runs are trained once: a finished run with the same settings is reused, and a
directory holding anything else is refused, never overwritten (benchmarks/studies/runs.py)."""

import json
import os

import pytest

from mtlcore.benchmarks.studies import runs as study_runs
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

  monkeypatch.setattr(study_runs, "run_mtl_train", run)
  return calls


def test_a_finished_run_is_reused_with_its_own_wall_time(tmp_path, trained):
  run_dir = str(tmp_path / "default_seed0")
  first = study_runs.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  again = study_runs.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  assert trained == [["--seed=0"]]  # Trained once.
  assert first == again and again["seconds"] == 12.5
  assert again["metrics"]["quality"] == {"args": ["--seed=0"], "seconds": 12.5,
                                         "code": study_runs.code_version()}


def test_a_report_names_the_code_that_trained_its_runs(tmp_path, trained, monkeypatch):
  version = study_runs.code_version()  # This checkout's commit, e.g. "11976ec" or "...-dirty".
  assert version == "unknown" or len(version.split("-")[0]) >= 7
  runs = [study_runs.train_once(str(tmp_path / f"new_seed{s}"), [f"--seed={s}"], "quality",
                            {"args": [f"--seed={s}"]}) for s in (0, 1)]
  monkeypatch.setattr(study_runs, "code_version", lambda: "abc1234")
  runs.append(study_runs.train_once(str(tmp_path / "later_seed0"), ["--seed=0"], "quality",
                                {"args": ["--seed=0"]}))
  old = tmp_path / "old_seed0"  # Trained before runs kept their code version.
  old.mkdir()
  (old / "metrics.json").write_text('{"quality": {"args": [], "seconds": 1.0}}')
  runs.append(study_runs.finished_run(str(old), "quality", {"args": []}))
  assert study_runs.code_versions(runs) == f"{version} (2 runs), abc1234 (1 run), unrecorded (1 run)"


def test_a_directory_with_another_or_an_unfinished_run_is_refused(tmp_path, trained):
  run_dir = str(tmp_path / "default_seed0")
  study_runs.train_once(run_dir, ["--seed=0"], "quality", {"args": ["--seed=0"]})
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    before = f.read()
  with pytest.raises(ConfigError, match="default_seed0 holds an unfinished or different run"):
    study_runs.train_once(run_dir, ["--seed=0", "--lm_vocab=0"], "quality",
                      {"args": ["--seed=0", "--lm_vocab=0"]})
  with open(os.path.join(run_dir, "metrics.json"), encoding="utf-8") as f:
    assert f.read() == before  # Not overwritten.
  unfinished = tmp_path / "cut_off_seed1"
  (unfinished / "checkpoints").mkdir(parents=True)
  with pytest.raises(ConfigError, match="cut_off_seed1 holds an unfinished"):
    study_runs.train_once(str(unfinished), ["--seed=1"], "quality", {"args": ["--seed=1"]})
  assert len(trained) == 1


def test_saved_runs_are_kept_as_each_finishes_and_a_new_process_resumes(tmp_path):
  path = str(tmp_path / "runs.json")
  calls = []
  saved = study_runs.SavedRuns(path)
  assert saved.get("a", lambda: calls.append("a") or {"loss": 1.0}) == {"loss": 1.0}
  with open(path, encoding="utf-8") as f:
    assert json.load(f) == {"a": {"loss": 1.0}}  # On disk before the next run starts.
  again = study_runs.SavedRuns(path)  # As a new process would.
  assert again.get("a", lambda: calls.append("a again")) == {"loss": 1.0}
  assert again.get("b", lambda: calls.append("b") or 2) == 2
  assert calls == ["a", "b"]
  assert study_runs.SavedRuns(None).get("c", lambda: 3) == 3  # No path: nothing saved.
