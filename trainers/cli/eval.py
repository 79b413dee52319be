"""mtl-eval: scores a trained model on a held-out split and writes its predictions.

  mtl-eval --model_dir=runs/conll2000 [--split=test] [--output=predictions/]

Rebuilds the model that --model_dir's config.json describes (through the same builder as
mtl-train), restores the best-on-dev (or latest) checkpoint and prints the task set's metrics
for the tasks the run trained. --output is a directory that receives what the task set writes
for predictions (tagging and conll2000: TASK.txt per trained task, conlleval's input `word
gold pred`); it is written in full beside the target and then moved in. It must be new, empty
or mtl-eval's earlier output for the same --model_dir (--overwrite: for any model directory);
a file or a directory of other files is refused and left as it is (mtlcore.files).
"""

import os

from absl import flags

from mtlcore import files
from mtlcore.errors import ConfigError
from mtlcore.trainers import run
from mtlcore.trainers.cli import common
# The run flags define --model_dir and --data_dir, which mtl-eval reads.
from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=unused-import

FLAGS = flags.FLAGS
flags.DEFINE_string("split", "test", "Which held-out split to score (conll2000: dev or test).")
flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "best-on-dev or latest checkpoint.")
flags.DEFINE_string("output", None, "A directory to write the predictions into (tagging, "
                    "conll2000: TASK.txt per task, conlleval's input).")


def format_metrics(metrics):
  """One `key value` line per metric, overall metrics first, then per-type ones indented."""
  overall = [k for k in sorted(metrics) if "_by_type/" not in k]
  by_type = [k for k in sorted(metrics) if "_by_type/" in k]
  return "\n".join([f"{k:<24s} {metrics[k]:7.2f}" for k in overall]
                   + [f"  {k:<22s} {metrics[k]:7.2f}" for k in by_type])


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


def main():
  if not FLAGS.model_dir:
    raise ConfigError("--model_dir is required.")
  rules = output_rules(FLAGS.model_dir, FLAGS.overwrite)
  if FLAGS.output:  # Refused before the model is built.
    files.check_output_directory(FLAGS.output, **rules)
  config, task_set, model, data, path = run.restore(FLAGS.model_dir, which=FLAGS.checkpoint,
                                                    data_dir=FLAGS.data_dir)
  if FLAGS.split not in task_set.splits:
    raise ConfigError(f"--split={FLAGS.split}: --task_set={config.task_set} has the held-out "
                      f"splits {list(task_set.splits)}.")
  metrics = task_set.evaluate(model, data, config.tasks, FLAGS.split)
  print(f"checkpoint {path}\nsplit {FLAGS.split}, tasks {', '.join(config.tasks)}")
  print(format_metrics(metrics))
  if FLAGS.output:
    write_predictions(task_set, model, data, config.tasks, FLAGS.split, FLAGS.output, rules)
  return metrics


def console_main():
  common.run("mtl-eval", main)


if __name__ == "__main__":
  console_main()
