"""Which checkpoint is best (trainers.selection): one metric either way up, Delta_m over the
tasks against given or measured references, one best per task in best/TASK/; metrics.json
says which; a resume may not change the rule; errors name the flag."""

import dataclasses
import json

import pytest
from tensorboard.backend.event_processing import event_accumulator
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.task_kinds import Classification, Regression
from mtlcore.trainers import run
from mtlcore.trainers.config import RunConfig
from mtlcore.trainers.selection import Rule, make_rules
from tests.test_evaluation import Small

SMALL = "tests.test_evaluation:Small"
REFERENCES = ("value/mae=1.5", "kind/accuracy=0.5", "flags/accuracy=0.5")


def _config(tmp_path, **kwargs):
  return RunConfig(task_set=SMALL, model_dir=str(tmp_path), mode="joint", train_steps=30,
                   steps_per_loop=10, eval_every=10, batch_size=16, learning_rate=0.02,
                   **kwargs)


def test_delta_m_is_the_mean_signed_relative_gain_in_percent():
  rule = Rule("delta_m", ("a/mae", "b/accuracy"), (-1, 1), (2.0, 0.5))
  # a: mae 1.0 against 2.0 is a 50% gain; b: 0.6 against 0.5 a 20% gain.
  assert rule.score({"a/mae": 1.0, "b/accuracy": 0.6}) == pytest.approx(35.0)
  assert Rule("metric", ("a/loss",), (-1,)).score({"a/loss": 0.3}) == -0.3
  with pytest.raises(ConfigError, match=r"--select_by: the evaluation has no \['b/accuracy'\]"):
    rule.score({"a/mae": 1.0})


def test_the_rules_read_each_metrics_direction_and_the_references(tmp_path):
  task_set = Small()
  tasks = [k.task(n) for n, k in Small.kinds.items()]
  rule, per_task = make_rules(_config(tmp_path / "m", select_by="delta_m",
                                      select_references=REFERENCES), task_set, tasks)
  assert rule.keys == ("value/mae", "kind/accuracy", "flags/accuracy")
  assert rule.signs == (-1, 1, 1) and rule.references == (1.5, 0.5, 0.5) and per_task == {}
  (tmp_path / "single").mkdir()
  (tmp_path / "single" / "metrics.json").write_text(json.dumps(
      {"dev": {"value/mae": 0.75, "kind/accuracy": 0.9}}))
  measured, _ = make_rules(_config(tmp_path / "m", select_by="delta_m", select_references=(
      str(tmp_path / "single"), "flags/accuracy=0.8")), task_set, tasks)
  assert measured.references == (0.75, 0.9, 0.8)
  one, per_task = make_rules(_config(tmp_path / "m", select_by="value/rmse",
                                     best_per_task=True), task_set, tasks)
  assert one.signs == (-1,) and set(per_task) == {"value", "kind", "flags"}
  assert per_task["kind"].keys == ("kind/accuracy",)


@pytest.mark.parametrize("kwargs,message", [
    ({"select_by": "accuracy"}, r"^--select_by must be TASK/METRIC or delta_m"),
    ({"select_references": ("a/b=1",)}, r"need --select_by=delta_m"),
    ({"select_by": "delta_m"}, r"^--select_by=delta_m needs --select_references"),
    ({"select_by": "delta_m", "select_references": ("value/mae=0", "kind/accuracy=1",
                                                    "flags/accuracy=1")},
     r"the reference of \['value/mae'\] is 0"),
    ({"select_by": "delta_m", "select_references": ("value/mae=1",)},
     r"gives no reference for \['kind/accuracy', 'flags/accuracy'\]"),
    ({"select_by": "delta_m", "select_references": ("nowhere",)},
     r"cannot read nowhere/metrics.json"),
    ({"select_by": "colour/accuracy"}, r"'colour' is not a task of this run"),
])
def test_a_bad_rule_is_one_line_naming_the_flag(tmp_path, kwargs, message):
  tasks = [k.task(n) for n, k in Small.kinds.items()]
  with pytest.raises(ConfigError, match=message):
    make_rules(_config(tmp_path, **kwargs), Small(), tasks)


def _eval_scalars(model_dir):
  acc = event_accumulator.EventAccumulator(str(model_dir / "eval"), size_guidance={"tensors": 0})
  acc.Reload()
  return {tag: {e.step: float(tf.make_ndarray(e.tensor_proto)) for e in acc.Tensors(tag)}
          for tag in acc.Tags()["tensors"]}


@pytest.fixture(scope="module")
def delta_m_run(tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("delta_m")
  run.train(_config(model_dir, select_by="delta_m", select_references=REFERENCES,
                    best_per_task=True))
  return model_dir


def test_best_is_the_evaluation_with_the_highest_delta_m_and_metrics_json_says_so(delta_m_run):
  metrics = json.loads((delta_m_run / "metrics.json").read_text())
  selection = metrics["selection"]
  assert selection["rule"] == "delta_m" and selection["references"] == {
      "value/mae": 1.5, "kind/accuracy": 0.5, "flags/accuracy": 0.5}
  scalars = _eval_scalars(delta_m_run)
  rule = Rule("delta_m", tuple(selection["keys"]), (-1, 1, 1), (1.5, 0.5, 0.5))
  scores = {step: rule.score({k: scalars[k][step] for k in rule.keys})
            for step in scalars["value/mae"]}
  best_step = int(metrics["checkpoint"].rpartition("ckpt-")[2])
  assert metrics["checkpoint"].endswith(f"best/ckpt-{best_step}")
  assert scores[best_step] == pytest.approx(max(scores.values()), rel=1e-6)
  assert selection["best_score"] == pytest.approx(scores[best_step], rel=1e-5)


def test_each_task_keeps_its_own_best_and_mtl_eval_can_restore_it(delta_m_run):
  metrics = json.loads((delta_m_run / "metrics.json").read_text())
  scalars = _eval_scalars(delta_m_run)
  for task, key, better in (("value", "value/mae", min), ("kind", "kind/accuracy", max)):
    entry = metrics["best_per_task"][task]
    values = scalars[key]
    step = int(entry["checkpoint"].rpartition("ckpt-")[2])
    assert entry["key"] == key and entry["checkpoint"].endswith(f"best/{task}/ckpt-{step}")
    assert values[step] == pytest.approx(better(values.values()), rel=1e-6)  # float32 events.
    assert set(entry["dev"]) == {k for k in metrics["dev"] if k.startswith(f"{task}/")}
    assert entry["dev"][key] == pytest.approx(values[step], rel=1e-5)
  _, _, _, _, path = run.restore(str(delta_m_run), which="best/kind")
  assert path == metrics["best_per_task"]["kind"]["checkpoint"]
  with pytest.raises(ConfigError, match=r"no checkpoint in .*best/colour: task 'colour'"):
    run.restore(str(delta_m_run), which="best/colour")


def test_a_resume_may_not_change_the_rule(delta_m_run):
  with pytest.raises(ConfigError, match="select_by"):
    run.train(dataclasses.replace(_config(delta_m_run, select_by="kind/accuracy",
                                          best_per_task=True), train_steps=40))


def test_kinds_declare_which_way_their_metrics_improve():
  from mtlcore import metrics  # pylint: disable=import-outside-toplevel
  regression = Regression().task("r")
  assert not metrics.as_metric(regression.metrics["mae"]).higher_is_better
  assert not metrics.as_metric(regression.metrics["rmse"]).higher_is_better
  assert metrics.as_metric(Classification(2).task("c").metrics["macro_f1"]).higher_is_better


def test_mtl_eval_names_a_bad_checkpoint_choice(tmp_path):
  from tests.binaries import EVAL, error_line, run_in_process  # pylint: disable=import-outside-toplevel
  result = run_in_process(EVAL, f"--model_dir={tmp_path}", "--checkpoint=best/")
  assert result.returncode != 0
  assert error_line(result).endswith("--checkpoint must be best, latest or best/TASK, got "
                                     "'best/'.")
