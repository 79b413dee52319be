"""mtl-eval: scores a trained model on a held-out split and writes its predictions.

  mtl-eval --model_dir=runs/mine [--split=test] [--output=predictions/]

Rebuilds the model that --model_dir's config.json describes (through the same builder as
mtl-train), restores the best-on-dev (or latest) checkpoint and prints the task set's metrics
for the tasks the run trained. --output is a directory that receives what the task set writes
for predictions (the built-in sequence task sets: TASK.txt per trained task, one `token gold
predicted` line per token); it is written in full beside the target and then moved in. It must be new, empty
or mtl-eval's earlier output for the same --model_dir (--overwrite: for any model directory);
a file or a directory of other files is refused and left as it is (mtlcore.files).
"""

import os

from absl import flags

import json

from mtlcore import files
from mtlcore.errors import ConfigError
from mtlcore.trainers.cli import common
# The run flags define --model_dir and --data_dir, which mtl-eval reads.
from mtlcore.trainers.cli import flags as run_flags
from mtlcore.trainers.cli import task_set_flags
from mtlcore.trainers.config import TASK_SET_IMPORT

FLAGS = flags.FLAGS
flags.DEFINE_string("split", "test", "Which held-out split to score (one of the task set's).")
flags.DEFINE_string("checkpoint", "best", "best (best-on-dev), latest, or best/TASK (a "
                    "task's own best, kept with mtl-train --best_per_task).")
flags.DEFINE_string("output", None, "A directory to write the predictions into (what the task "
                    "set writes for them).")


def format_metrics(metrics, is_detail=lambda key: False):
  """One `key value` line per metric, headline metrics first, then the details (the task
  set's TaskSet.is_detail_metric) indented."""
  overall = [k for k in sorted(metrics) if not is_detail(k)]
  detail = [k for k in sorted(metrics) if is_detail(k)]
  return "\n".join([f"{k:<24s} {metrics[k]:7.2f}" for k in overall]
                   + [f"  {k:<22s} {metrics[k]:7.2f}" for k in detail])


def output_rules(model_dir, overwrite):
  """mtlcore.files' rules for --output: it replaces mtl-eval's earlier output of the same
  model directory, another's only with --overwrite."""
  return {"kind": "predictions", "source": os.path.realpath(model_dir), "overwrite": overwrite,
          "flag": "--output"}


def write_predictions(task_set, model, data, tasks, split, path, rules):
  """The task set's predictions, written into a staging directory and moved in as `path`."""
  try:
    files.write_output_directory(
        path, lambda directory: task_set.write_predictions(model, data, tasks, split, directory),
        **rules)
  except OSError as e:
    raise ConfigError(f"--output={path}: cannot write there ({e.strerror}).") from None


# The run flags mtl-eval reads; the task set's options among them only where the task set
# lets them choose evaluation data (TaskSet.evaluation_options, e.g. --test=FILE).
READS = ("model_dir", "data_dir", "tasks", "task_set", "overwrite", "task_set_options")


def define_task_set_flags(argv):
  """Defines the options of the run's task set (--task_set, else the one --model_dir's
  config.json records) as flags. When the record cannot be read or its task set not found,
  none are defined: restoring the run then says what is wrong."""
  task_set_flags.clear()
  name = task_set_flags.flag_value(argv, "task_set")
  if name:
    task_set_flags.define(name)
    return
  model_dir = task_set_flags.flag_value(argv, "model_dir")
  try:
    with open(os.path.join(model_dir or "", "config.json"), encoding="utf-8") as f:
      stored = json.load(f)
    task_set_flags.define(stored.get(TASK_SET_IMPORT) or stored["task_set"])
  except (OSError, ValueError, KeyError, TypeError, AttributeError, ConfigError):
    pass


def _same_task_set(given, config_file, run):
  """Refuses a --task_set that is not the one the run trained (by name or import path)."""
  stored = run.ModelDir(FLAGS.model_dir).read_config()
  if isinstance(stored, dict) and given not in (stored.get("task_set"),
                                                stored.get(TASK_SET_IMPORT)):
    raise ConfigError(f"--task_set={given}: {config_file} holds a run of --task_set="
                      f"{stored.get('task_set')}; mtl-eval scores a model with the task set "
                      f"it was trained with (drop --task_set).")


def main():
  common.refuse_flags("mtl-eval", READS)
  if not FLAGS.model_dir:
    raise ConfigError("--model_dir is required.")
  which = FLAGS.checkpoint
  if which not in ("best", "latest") and not (
      which.startswith("best/") and which.partition("/")[2].isidentifier()):
    raise ConfigError(f"--checkpoint must be best, latest or best/TASK, got {which!r}.")
  rules = output_rules(FLAGS.model_dir, FLAGS.overwrite)
  if FLAGS.output:  # Refused before TensorFlow starts and the model is built.
    files.check_output_directory(FLAGS.output, **rules)
  common.start_tensorflow()
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  if FLAGS["task_set"].present:
    _same_task_set(FLAGS.task_set, os.path.join(FLAGS.model_dir, "config.json"), run)
  config, task_set, model, data, path = run.restore(
      FLAGS.model_dir, which=FLAGS.checkpoint, data_dir=FLAGS.data_dir,
      tasks=tuple(FLAGS.tasks or ()), evaluation_options=run_flags.task_set_options())
  if FLAGS.split not in task_set.splits:
    raise ConfigError(f"--split={FLAGS.split}: --task_set={config.task_set} has the held-out "
                      f"splits {list(task_set.splits)}.")
  metrics = task_set.evaluate(model, data, config.tasks, FLAGS.split)
  print(f"checkpoint {path}\nsplit {FLAGS.split}, tasks {', '.join(config.tasks)}")
  print(format_metrics(metrics, task_set.is_detail_metric))
  if FLAGS.output:
    write_predictions(task_set, model, data, config.tasks, FLAGS.split, FLAGS.output, rules)
  return metrics


def console_main():
  groups = (("mtl-eval", ("model_dir", "split", "checkpoint", "output", "overwrite", "data_dir")),
            ("What is scored (a subset of the run's tasks; options of the task set that choose "
             "its evaluation data)", ("tasks", "task_set", "task_set_options")))
  common.run("mtl-eval", main, usage=__doc__, help_groups=lambda: run_flags.help_groups(groups),
             prepare=define_task_set_flags)


if __name__ == "__main__":
  console_main()
