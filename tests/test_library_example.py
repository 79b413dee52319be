"""README's "Use it as a library" example, run verbatim: three tasks of two kinds
(mtlcore.task_kinds) on an own trunk, alternating over data sets of different sizes and
jointly over one that misses 30% of each label, with the outer loop's checkpoints,
TensorBoard, the engine's evaluation and export; then the same file as an mtl-train plugin
(--task_set=module:Class)."""

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator

from mtlcore import task_set
from mtlcore.errors import ConfigError
from tests.binaries import EVAL, TRAIN, error_line, run_in_process

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
MARKER = "<!-- library example: shapes_example.py -->"
TASKS = ("height", "weight", "kind")


def readme_example():
  """The Python block that follows the marker in README.md."""
  text = README.read_text()
  after = text[text.index(MARKER) + len(MARKER):]
  match = re.match(r"\s*```python\n(.*?)\n```", after, re.S)
  assert match, "README's library example must follow the marker as a ```python block"
  return match.group(1) + "\n"


def _scalars(run_dir):
  acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
  acc.Reload()
  return {tag: [float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)]
          for tag in acc.Tags()["tensors"]}


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("example")
  (root / "shapes_example.py").write_text(readme_example())
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
  result = subprocess.run([sys.executable, "shapes_example.py"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return root, result


@pytest.mark.parametrize("mode", ["alternate", "joint"])
def test_readme_example_trains_three_tasks_whose_losses_fall(example_run, mode):
  root, _ = example_run
  train = _scalars(root / "runs" / f"shapes_{mode}" / "train")
  for task in TASKS:
    losses = train[f"{task}/loss"]
    assert len(losses) >= 2 and losses[-1] < 0.5 * losses[0], (task, losses)
  evaluation = _scalars(root / "runs" / f"shapes_{mode}" / "eval")
  assert evaluation["kind/accuracy"][-1] > 0.8, evaluation["kind/accuracy"]
  metrics = json.loads((root / "runs" / f"shapes_{mode}" / "metrics.json").read_text())
  assert set(metrics["dev"]) == {f"{t}/{m}" for t in ("height", "weight")
                                 for m in ("loss", "mae", "rmse")} | {
                                     "kind/loss", "kind/accuracy", "kind/macro_f1"}


@pytest.mark.parametrize("mode", ["alternate", "joint"])
def test_a_metric_has_one_unit_in_train_and_eval(example_run, mode):
  """One definition (the task kind's): accuracy is a fraction in train/ and eval/, and the
  last training loop's value is near the evaluation's."""
  root, _ = example_run
  train = _scalars(root / "runs" / f"shapes_{mode}" / "train")
  evaluation = _scalars(root / "runs" / f"shapes_{mode}" / "eval")
  for key in ("kind/accuracy", "kind/macro_f1", "height/mae"):
    assert abs(train[key][-1] - evaluation[key][-1]) < 0.15, (key, train[key], evaluation[key])
  assert 0 < train["kind/accuracy"][-1] <= 1 and 0 < evaluation["kind/accuracy"][-1] <= 1


def test_alternating_steps_follow_the_sampler_over_unequal_data_sets(example_run):
  root, _ = example_run
  train = _scalars(root / "runs" / "shapes_alternate" / "train")
  steps = {t: train[f"steps/{t}"][-1] for t in TASKS}
  total = train["steps/global"][-1]
  # Two passes over (3000 + 800 + 6000) examples in batches of 32, one task per step, each
  # task drawn with probability 1/3.
  assert total == round(2 * (-(-3000 // 32) + -(-800 // 32) + -(-6000 // 32)))
  assert sum(steps.values()) == total
  assert all(abs(n - total / 3) < 4 * (total * 2 / 9) ** 0.5 for n in steps.values()), steps


def test_a_metric_named_neither_loss_nor_accuracy_reaches_tensorboard_and_the_progress_line(
    example_run):
  root, result = example_run
  train = _scalars(root / "runs" / "shapes_joint" / "train")
  assert {"height/mae", "weight/rmse", "kind/macro_f1"} <= set(train)
  assert train["kind/macro_f1"][-1] > train["kind/macro_f1"][0]
  progress = [l for l in result.stderr.splitlines() if re.search(r"step \d+/\d+ ", l)]
  assert progress and all(re.search(r"kind/macro_f1=0\.\d+ ", l)
                          and re.search(r"height/mae=\d+\.\d+ ", l) for l in progress), progress[:3]


def test_the_example_exports_its_three_tasks(example_run):
  root, result = example_run
  served = tf.saved_model.load(str(root / "runs" / "shapes_joint" / "export"))
  outputs = served.signatures["serving_default"](x=tf.zeros([5, 8]))
  assert {k: tuple(v.shape) for k, v in outputs.items()} == {
      "height": (5,), "weight": (5,), "kind": (5, 3)}
  assert ("{'height': TensorShape([4]), 'kind': TensorShape([4, 3]), "
          "'weight': TensorShape([4])}") in result.stdout


def test_the_example_is_a_task_set_plugin_for_mtl_train(example_run, tmp_path, monkeypatch):
  root, _ = example_run
  monkeypatch.syspath_prepend(str(root))
  result = run_in_process(TRAIN, "--task_set=shapes_example:Shapes",
                          "--mode=single", "--tasks=kind", f"--model_dir={tmp_path}",
                          "--train_steps=100", f"--export_dir={tmp_path / 'export'}")
  assert result.returncode == 0, result.stderr[-3000:]
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  assert set(metrics["dev"]) == {"kind/loss", "kind/accuracy", "kind/macro_f1"}
  assert metrics["tasks"] == ["kind"]
  served = tf.saved_model.load(str(tmp_path / "export")).signatures["serving_default"]
  assert list(served(x=tf.zeros([2, 8]))) == ["kind"]


@pytest.fixture
def shapes_module(tmp_path, monkeypatch):
  """README's example, importable as shapes_example (a task set plugin by path)."""
  (tmp_path / "shapes_example.py").write_text(readme_example())
  monkeypatch.syspath_prepend(str(tmp_path))
  return "shapes_example:Shapes"


def _task_steps(model_dir):
  path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return {t: int(tf.train.load_variable(path, f"trainer/task_steps/{t}/.ATTRIBUTES/"
                                                "VARIABLE_VALUE")) for t in TASKS}


def test_the_proportional_sampler_draws_each_task_by_its_corpus_size(shapes_module, tmp_path):
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  steps = 1200
  run.train(RunConfig(task_set=shapes_module, mode="alternate", sampler="proportional",
                      model_dir=str(tmp_path / "m"), train_steps=steps, eval_every=0))
  counts = _task_steps(tmp_path / "m")
  sizes = {"height": -(-3000 // 32), "weight": -(-800 // 32), "kind": -(-6000 // 32)}  # Batches per pass.
  for task, n in counts.items():
    p = sizes[task] / sum(sizes.values())
    assert abs(n - steps * p) < 4 * (steps * p * (1 - p)) ** 0.5, (counts, sizes)
  epochs = _scalars(tmp_path / "m" / "train")
  for task in TASKS:  # Passes over each task's own corpus: about equal when proportional.
    assert epochs[f"epochs/{task}"][-1] == pytest.approx(counts[task] / sizes[task])


def test_round_robin_alternates_exactly(shapes_module, tmp_path):
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  run.train(RunConfig(task_set=shapes_module, mode="alternate", sampler="round_robin",
                      model_dir=str(tmp_path / "m"), train_steps=100, eval_every=0))
  assert _task_steps(tmp_path / "m") == {"height": 34, "weight": 33, "kind": 33}


def test_eval_finds_a_task_set_registered_by_name_through_the_recorded_import_path(
    example_run, monkeypatch):
  root, _ = example_run
  model_dir = root / "runs" / "shapes_joint"
  stored = json.loads((model_dir / "config.json").read_text())
  assert stored["task_set"] == "shapes" and stored["task_set_import"] == "shapes_example:Shapes"
  sys.modules.pop("shapes_example", None)  # Imported by the tests above.
  missing = run_in_process(EVAL, f"--model_dir={model_dir}", "--split=dev")
  line = error_line(missing)
  assert "cannot import shapes_example" in line and "on PYTHONPATH" in line
  monkeypatch.syspath_prepend(str(root))
  try:
    found = run_in_process(EVAL, f"--model_dir={model_dir}", "--split=dev")
    assert found.returncode == 0, found.stderr
    assert "kind/accuracy" in found.stdout
    named = run_in_process(EVAL, f"--model_dir={model_dir}", "--split=dev",
                           "--task_set=shapes_example:Shapes")
    assert named.returncode == 0, named.stderr
  finally:
    sys.modules.pop("shapes_example", None)


def test_a_factory_that_cannot_be_imported_by_name_is_refused_at_registration():
  with pytest.raises(ConfigError, match="cannot be imported by name"):
    task_set.register("anonymous", lambda options: None)

  def local(options):
    return options

  with pytest.raises(ConfigError, match="define it at the top level of a module"):
    task_set.register("local", local)
  assert "anonymous" not in task_set.names() and "local" not in task_set.names()
