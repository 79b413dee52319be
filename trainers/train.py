"""mtl-train: trains a multi-task model jointly, alternately or on a single task.

  mtl-train --task_set=toy --mode=alternate --train_steps=2000 --model_dir=/tmp/toy

Resumes from the latest checkpoint in --model_dir. Bad flags or input end the run with one
line on stderr and exit status 1.
"""

import os

from absl import flags

from mtlcore.errors import ConfigError
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from trainers import cli, task_sets
from trainers.alternating import AlternatingTrainer
from trainers.joint import JointTrainer
from trainers.loop import LoopOptions, TrainingLoop
from trainers.progress import ProgressLogger

TASK_SETS = {"toy": ("y1", "y2")}

FLAGS = flags.FLAGS
flags.DEFINE_enum("task_set", "toy", list(TASK_SETS), "Which task set to train.")
flags.DEFINE_enum("mode", "joint", ["joint", "alternate", "single"],
                  "joint: one batch, summed losses, one optimizer. alternate: one task per step "
                  "(chosen by the sampler), one optimizer per task. single: train one task.")
flags.DEFINE_list("tasks", None, "Tasks to train (default: all of the task set's). "
                  "--mode=single takes exactly one.")
flags.DEFINE_list("task_weights", None, "Per-task numbers, in --tasks order: loss weights in "
                  "joint mode, sampling probabilities in alternate mode. Default: all equal.")
flags.DEFINE_boolean("xla", True, "Compile each training step with XLA (jit_compile=True).")
flags.DEFINE_integer("batch_size", 32, "Examples per batch.")
flags.DEFINE_float("learning_rate", 1e-2, "Adam learning rate.")
flags.DEFINE_float("clip_norm", None, "Clip each step's gradients to this global norm.")
flags.DEFINE_integer("train_steps", None, "Total training steps (overrides --epochs).")
flags.DEFINE_float("epochs", 5.0, "Training length in passes over the training data.")
flags.DEFINE_integer("steps_per_loop", 50, "Steps run inside one tf.function call.")
flags.DEFINE_integer("log_every", 200, "Log progress every this many steps.")
flags.DEFINE_integer("eval_every", 0, "Evaluate on dev every this many steps (0: at the end).")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint every this many steps.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order, dropout and task sampling.")
flags.DEFINE_string("model_dir", None, "Where checkpoints and logs go; training resumes "
                    "from the latest checkpoint here.")


def _task_list():
  available = TASK_SETS[FLAGS.task_set]
  tasks = tuple(FLAGS.tasks) if FLAGS.tasks else available
  unknown = [t for t in tasks if t not in available]
  if unknown:
    raise ConfigError(f"--tasks names unknown task(s) {unknown} for --task_set="
                      f"{FLAGS.task_set}; its tasks are {list(available)}.")
  if len(set(tasks)) != len(tasks):
    raise ConfigError(f"--tasks lists a task twice: {list(tasks)}.")
  if FLAGS.mode == "single" and len(tasks) != 1:
    raise ConfigError(f"--mode=single trains exactly one task; --tasks gave {list(tasks)}.")
  return tasks


def _task_weights(tasks):
  if FLAGS.task_weights is None:
    return None
  if len(FLAGS.task_weights) != len(tasks):
    raise ConfigError(f"--task_weights needs one number per task {list(tasks)}, got "
                      f"{FLAGS.task_weights}.")
  try:
    weights = [float(w) for w in FLAGS.task_weights]
  except ValueError as e:
    raise ConfigError(f"--task_weights must be numbers: {e}.") from None
  if any(not w >= 0 for w in weights) or not sum(weights) > 0:
    raise ConfigError(f"--task_weights must be non-negative with a positive sum, got {weights}.")
  return dict(zip(tasks, weights))


def build_trainer(task_set, tasks, weights):
  """The trainer for --mode, over the given TaskSet."""
  common = dict(model=task_set.model, tasks=task_set.tasks, seed=FLAGS.seed,
                jit_compile=FLAGS.xla, clip_norm=FLAGS.clip_norm)
  if FLAGS.mode == "joint":
    return JointTrainer(optimizer=Adam(FLAGS.learning_rate, name="adam"),
                        dataset=task_set.joint_dataset, loss_weights=weights, **common)
  sampler = TaskSampler(tasks, None if weights is None else [weights[t] for t in tasks],
                        seed=FLAGS.seed)
  return AlternatingTrainer(
      optimizers={t: Adam(FLAGS.learning_rate, name=f"adam_{t}") for t in tasks},
      datasets={t: task_set.task_datasets[t] for t in tasks}, sampler=sampler, **common)


def run():
  """Builds everything from flags, trains, and returns the final logs and metrics."""
  if not FLAGS.model_dir:
    raise ConfigError("--model_dir is required: checkpoints and logs go there.")
  for name in ("batch_size", "steps_per_loop", "log_every", "checkpoint_every"):
    if getattr(FLAGS, name) <= 0:
      raise ConfigError(f"--{name} must be positive, got {getattr(FLAGS, name)}.")
  if not FLAGS.learning_rate > 0:
    raise ConfigError(f"--learning_rate must be positive, got {FLAGS.learning_rate}.")
  tasks = _task_list()
  weights = _task_weights(tasks)
  task_set = task_sets.build_toy(tasks=tasks, batch_size=FLAGS.batch_size, seed=FLAGS.seed)
  if FLAGS.train_steps is not None:
    total_steps = FLAGS.train_steps
  else:
    total_steps = round(FLAGS.epochs * task_set.steps_per_epoch * (
        len(tasks) if FLAGS.mode == "alternate" else 1))
  if total_steps <= 0:
    raise ConfigError(f"Training length must be positive: --train_steps={FLAGS.train_steps}, "
                      f"--epochs={FLAGS.epochs}.")
  trainer = build_trainer(task_set, tasks, weights)
  options = LoopOptions(total_steps=total_steps, steps_per_loop=FLAGS.steps_per_loop,
                        log_every=FLAGS.log_every, eval_every=FLAGS.eval_every,
                        checkpoint_every=FLAGS.checkpoint_every)
  os.makedirs(FLAGS.model_dir, exist_ok=True)
  progress = ProgressLogger(total_steps)
  loop = TrainingLoop(trainer=trainer, model_dir=FLAGS.model_dir, options=options,
                      evaluate=None, on_log=progress.log_train, on_eval=progress.log_eval)
  return loop.run()


def console_main():
  cli.run("mtl-train", run)


if __name__ == "__main__":
  console_main()
