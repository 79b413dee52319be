"""mtl-train: trains a multi-task model jointly, alternately or on a single task.

  mtl-train --model_dir=runs/joint                  # the default task set, jointly
  mtl-train --mode=alternate --model_dir=runs/alt    # one task per step, sampled
  mtl-train --mode=single --tasks=TASK --model_dir=runs/one
  mtl-train --task_set=NAME --helpshort              # NAME's options (installed task sets)
  mtl-train --task_set=my_package.tasks:make_task_set --model_dir=runs/mine

Resumes from the latest checkpoint in --model_dir (a resumed run may change only what
the resume table of docs/guide.md allows). SIGTERM or SIGINT (Ctrl-C) makes it finish the current loop of
steps, write a checkpoint and exit 0; the next run continues from there. With held-out data
it keeps the best-on-dev checkpoint, evaluates it on every split into metrics.json and
exports it to --export_dir if given. Bad flags or input end the run with one line on stderr
and exit status 1. In-process: `mtlcore.trainers.run.train(RunConfig(...))`.
"""

from mtlcore.trainers.cli import common
from mtlcore.trainers.cli import flags as run_flags


def main():
  config = run_flags.run_config()  # Checked before TensorFlow starts.
  common.start_tensorflow()
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  return run.train(config)


def console_main():
  common.run("mtl-train", main, usage=__doc__, help_groups=run_flags.help_groups,
             prepare=run_flags.define_task_set_flags, defaults=run_flags.run_defaults)


if __name__ == "__main__":
  console_main()
