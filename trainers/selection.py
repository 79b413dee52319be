"""Which checkpoint is best: by one metric, or by the mean relative gain over the tasks
(Delta_m); and, if asked, one best checkpoint per task.

The rule (RunConfig.select_by):
  ""             the task set's selection metric (TaskSet.selection_metric);
  "TASK/METRIC"  that key of the evaluation;
  "delta_m"      Delta_m = 100 / K x sum over the K tasks of s_k (M_k - R_k) / |R_k|, in
                 percent: M_k is task k's key (the task set's selection key for that task,
                 else its first metric, else its loss), s_k +1 where higher is better and -1
                 where lower (the metric's `higher_is_better`; a loss is lower-is-better),
                 R_k its reference: `select_references` gives KEY=VALUE pairs, or model
                 directories of runs (e.g. single-task ones) whose metrics.json holds the key
                 on the same split.
With `best_per_task`, each task's best checkpoint by its own key is kept as well, in
best/TASK/ of the model directory. Every rule scores so that higher is better.
"""

import dataclasses
import json
import math
import os

from mtlcore import metrics as metrics_lib
from mtlcore.errors import ConfigError


def higher_is_better(key, tasks):
  """Whether evaluation key TASK/METRIC improves upwards: a loss does not; a task's own metric
  says (mtlcore.metrics.Metric.higher_is_better); any other key (a task set's own score,
  e.g. an F1) does."""
  task, _, metric = key.partition("/")
  if metric == "loss":
    return False
  if task in tasks and metric in tasks[task].metrics:
    return metrics_lib.as_metric(tasks[task].metrics[metric]).higher_is_better
  return True


def task_key(task_set, task):
  """The evaluation key that stands for `task` (a mtlcore.tasks.Task) alone."""
  keys = task_set.selection_keys([task.name])
  if keys:
    return keys[0]
  return f"{task.name}/{next(iter(task.metrics), 'loss')}"


@dataclasses.dataclass(frozen=True)
class Rule:
  """A way to score an evaluation; `score(metrics)` is higher for better.

  Attributes:
    name: "metric" (one key) or "delta_m".
    keys: the evaluation keys it reads.
    signs: +1 or -1 per key (higher or lower is better).
    references: Delta_m's reference value per key; None for "metric".
    flag: what the user set, for errors.
  """
  name: str
  keys: tuple
  signs: tuple
  references: tuple | None = None
  flag: str = "--select_by"

  def _values(self, metrics):
    missing = [k for k in self.keys if k not in metrics]
    if missing:
      raise ConfigError(f"{self.flag}: the evaluation has no {missing}; its keys are "
                        f"{sorted(metrics)}.")
    return [float(metrics[k]) for k in self.keys]

  def score(self, metrics):
    values = self._values(metrics)
    if self.references is None:
      return self.signs[0] * values[0]
    gains = [s * (v - r) / abs(r) for s, v, r in zip(self.signs, values, self.references)]
    return 100.0 * sum(gains) / len(gains)

  def describe(self):
    """JSON-able: what metrics.json says of the rule."""
    if self.references is None:
      return {"rule": "metric", "key": self.keys[0],
              "higher_is_better": self.signs[0] > 0}
    return {"rule": "delta_m", "keys": list(self.keys),
            "higher_is_better": [s > 0 for s in self.signs],
            "references": dict(zip(self.keys, self.references))}


def _references(given, keys, split):
  """{key: reference} from KEY=VALUE items and model directories, for `keys`."""
  found = {}
  for item in given:
    if "=" in item:
      key, _, value = item.partition("=")
      try:
        found[key.strip()] = float(value)
      except ValueError:
        raise ConfigError(f"--select_references: {item!r} is not KEY=NUMBER.") from None
      continue
    path = os.path.join(item, "metrics.json")
    try:
      with open(path, encoding="utf-8") as f:
        held = json.load(f).get(split, {})
    except (OSError, ValueError, AttributeError) as e:
      raise ConfigError(f"--select_references: cannot read {path} "
                        f"({getattr(e, 'strerror', None) or e}); give a model directory of a "
                        f"finished run, or KEY=VALUE.") from None
    found.update({k: float(v) for k, v in held.items() if k in keys and k not in found})
  missing = [k for k in keys if k not in found]
  if missing:
    raise ConfigError(f"--select_references gives no reference for {missing} (on split "
                      f"'{split}'); Delta_m needs one per task.")
  zero = [k for k in keys if not math.isfinite(found[k]) or found[k] == 0]
  if zero:
    raise ConfigError(f"--select_references: the reference of {zero} is 0 or not finite; "
                      f"Delta_m divides by it.")
  return tuple(found[k] for k in keys)


def make_rules(config, task_set, tasks):
  """(the rule that picks best/, or None without held-out data; {task: its rule} for
  best/TASK/, empty unless config.best_per_task).

  Args:
    config: the RunConfig (select_by, select_references, best_per_task).
    task_set: the TaskSet.
    tasks: the run's mtlcore.tasks.Task objects, in order.
  """
  if not task_set.splits:
    if config.select_by or config.best_per_task:
      raise ConfigError(f"--select_by and --best_per_task choose among evaluations; "
                        f"--task_set={config.task_set} has no held-out split.")
    return None, {}
  by_name = {t.name: t for t in tasks}

  def one(key, flag):
    if key.partition("/")[0] not in by_name:
      raise ConfigError(f"{flag}={key}: {key.partition('/')[0]!r} is not a task of this run "
                        f"{list(by_name)}.")
    return Rule("metric", (key,), (1 if higher_is_better(key, by_name) else -1,), flag=flag)

  if config.select_by == "delta_m":
    keys = tuple(task_key(task_set, t) for t in tasks)
    rule = Rule("delta_m", keys, tuple(1 if higher_is_better(k, by_name) else -1 for k in keys),
                _references(config.select_references, keys, task_set.splits[0]))
  elif config.select_by:
    rule = one(config.select_by, "--select_by")
  else:
    default = task_set.selection_metric([t.name for t in tasks])
    rule = None if default is None else one(default, "the task set's selection")
  per_task = {}
  if config.best_per_task:
    per_task = {t.name: one(task_key(task_set, t), f"--best_per_task ({t.name})")
                for t in tasks}
  return rule, per_task
