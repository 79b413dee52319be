"""mtl-train: trains a multi-task model jointly, alternately or on a single task.

  mtl-train --model_dir=runs/conll2000                       # POS + chunking, jointly
  mtl-train --mode=alternate --model_dir=runs/alt
  mtl-train --mode=single --tasks=chunk --model_dir=runs/chunk
  mtl-train --task_set=toy --mode=alternate --model_dir=runs/toy

Resumes from the latest checkpoint in --model_dir. SIGTERM or SIGINT (Ctrl-C) makes it finish
the current loop of steps, write a checkpoint and exit 0; the next run continues from there. For CoNLL-2000 it keeps the best-on-dev
checkpoint in --model_dir/best, and after training evaluates that checkpoint on dev and test
into --model_dir/metrics.json (and exports it to --export_dir if given). Bad flags or input
end the run with one line on stderr and exit status 1.
"""

import contextlib
import dataclasses
import os
import signal
import time

import tensorflow as tf
from absl import flags, logging

from mtlcore.averaging import WeightAverage
from mtlcore.data import conll2000
from mtlcore.errors import ConfigError
from mtlcore.export import export_tagger
from mtlcore.networks.tagger import TRUNKS, TaggerConfig
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.schedules import LinearDecay
from trainers import cli, run_files, task_sets
from trainers.alternating import AlternatingTrainer
from trainers.joint import JointTrainer
from trainers.loop import LoopOptions, TrainingLoop
from trainers.profiling import GraphTrace, ProfileWindow, parse_profile_steps
from trainers.progress import ProgressLogger
from trainers.summaries import Summaries

TASK_SETS = {"conll2000": task_sets.CONLL_TASKS, "toy": ("y1", "y2")}
# Flags left unset take these per-task-set defaults.
DEFAULTS = {
    "conll2000": {"batch_size": 32, "learning_rate": 2e-3, "epochs": 24.0, "clip_norm": 5.0,
                  "eval_every": 1000, "lr_decay_start": 0.33, "average_decay": 0.0},
    "toy": {"batch_size": 32, "learning_rate": 1e-2, "epochs": 20.0, "clip_norm": None,
            "eval_every": 0, "lr_decay_start": 1.0, "average_decay": 0.0},
}

FLAGS = flags.FLAGS
flags.DEFINE_enum("task_set", "conll2000", list(TASK_SETS), "Which task set to train.")
flags.DEFINE_enum("mode", "joint", ["joint", "alternate", "single"],
                  "joint: one batch, summed losses, one optimizer. alternate: one task per step "
                  "(chosen by the sampler), one optimizer per task. single: train one task.")
flags.DEFINE_list("tasks", None, "Tasks to train (default: all of the task set's). "
                  "--mode=single takes exactly one.")
flags.DEFINE_list("task_weights", None, "Per-task numbers, in --tasks order: loss weights in "
                  "joint mode, sampling probabilities in alternate mode. Default: all equal.")
flags.DEFINE_boolean("xla", True, "Compile each training step with XLA (jit_compile=True).")
flags.DEFINE_integer("batch_size", None, "Sentences (examples) per batch. Default: 32.")
flags.DEFINE_float("learning_rate", None, "Adam learning rate. Default: 2e-3 (conll2000), "
                   "1e-2 (toy).")
flags.DEFINE_float("lr_decay_start", None, "Fraction of training after which the learning "
                   "rate falls linearly to --lr_final x its base at the last step; 1: constant. "
                   "Default: 0.33 (conll2000), 1 (toy).")
flags.DEFINE_float("lr_final", 0.0, "Learning-rate multiplier reached at the last step when "
                   "--lr_decay_start < 1.")
flags.DEFINE_float("average_decay", None, "Evaluate, keep as best and export an exponential "
                   "moving average of the weights with this decay; 0: the weights as trained. "
                   "Default: 0.")
flags.DEFINE_float("clip_norm", None, "Clip each step's gradients to this global norm. "
                   "Default: 5 (conll2000), none (toy).")
flags.DEFINE_integer("train_steps", None, "Total training steps (overrides --epochs).")
flags.DEFINE_float("epochs", None, "Training length in passes over the training data; in "
                   "alternate mode each task gets this many passes. Default: 24 (conll2000), "
                   "20 (toy).")
flags.DEFINE_integer("steps_per_loop", 50, "Steps run inside one tf.function call.")
flags.DEFINE_integer("log_every", 200, "Log progress every this many steps.")
flags.DEFINE_integer("eval_every", None, "Evaluate on dev every this many steps, keeping the "
                     "best checkpoint; 0: only at the end. Default: 1000 (conll2000).")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint every this many steps.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order, dropout and task sampling.")
flags.DEFINE_boolean("deterministic", False, "Enable TensorFlow op determinism as well, so "
                     "that two runs with the same flags give bitwise-identical variables.")
flags.DEFINE_integer("skip_nonfinite_steps", 0, "Skip (do not apply) up to this many steps "
                     "whose loss or gradient is NaN/Inf; one more stops training with an error.")
flags.DEFINE_string("model_dir", None, "Where checkpoints and logs go; training resumes "
                    "from the latest checkpoint here.")
flags.DEFINE_boolean("summaries", True, "Write TensorBoard summaries (train and eval runs, "
                     "HParams) under --model_dir.")
flags.DEFINE_boolean("trace_graph", False, "Write the training loop's graph to TensorBoard once.")
flags.DEFINE_string("profile_steps", None, "A,B: capture a TensorFlow profiler trace of steps "
                    "A to B into --model_dir/train.")
flags.DEFINE_string("data_dir", None, "Directory with CoNLL-2000 train.txt(.gz) and "
                    "test.txt(.gz). Default: $MTL_DATA_DIR, else a cache filled by download.")
flags.DEFINE_string("export_dir", None, "Export the best model as a SavedModel here.")
flags.DEFINE_enum("trunk", "bilstm", list(TRUNKS), "Tagger trunk: BiLSTM or convolutional.")
flags.DEFINE_boolean("hierarchical", True, "POS head reads the first trunk layer, chunk head "
                     "the top layer; otherwise both read the top.")
flags.DEFINE_boolean("chunk_crf", True, "Chunk head is a linear-chain CRF (Viterbi decoding); "
                     "otherwise a per-token softmax.")
flags.DEFINE_integer("word_dim", 100, "Word embedding size.")
flags.DEFINE_integer("char_filters", 64, "Character CNN filters.")
flags.DEFINE_integer("hidden_size", 128, "BiLSTM units per direction (conv: 2x filters).")
flags.DEFINE_integer("num_layers", 2, "Trunk layers (>= 2).")
flags.DEFINE_float("dropout", 0.5, "Dropout rate.")
flags.DEFINE_float("word_dropout", 0.1, "Probability of replacing a training word by the "
                   "unknown word.")


def _setting(name):
  value = getattr(FLAGS, name)
  return DEFAULTS[FLAGS.task_set][name] if value is None else value


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


def _check_flags():
  if not FLAGS.model_dir:
    raise ConfigError("--model_dir is required: checkpoints and logs go there.")
  for name in ("batch_size", "steps_per_loop", "log_every", "checkpoint_every"):
    value = _setting(name) if name == "batch_size" else getattr(FLAGS, name)
    if value <= 0:
      raise ConfigError(f"--{name} must be positive, got {value}.")
  if not _setting("learning_rate") > 0:
    raise ConfigError(f"--learning_rate must be positive, got {_setting('learning_rate')}.")
  if not 0.0 <= _setting("lr_decay_start") <= 1.0:
    raise ConfigError(f"--lr_decay_start must be in [0, 1], got {_setting('lr_decay_start')}.")
  if not 0.0 <= FLAGS.lr_final <= 1.0:
    raise ConfigError(f"--lr_final must be in [0, 1], got {FLAGS.lr_final}.")
  if not 0.0 <= _setting("average_decay") < 1.0:
    raise ConfigError(f"--average_decay must be in [0, 1), got {_setting('average_decay')}.")
  if _setting("clip_norm") is not None and not _setting("clip_norm") > 0:
    raise ConfigError(f"--clip_norm must be positive, got {_setting('clip_norm')}.")
  if _setting("eval_every") < 0:
    raise ConfigError(f"--eval_every must be 0 or positive, got {_setting('eval_every')}.")
  if FLAGS.train_steps is not None and FLAGS.train_steps <= 0:
    raise ConfigError(f"--train_steps must be positive, got {FLAGS.train_steps}.")
  if FLAGS.epochs is not None and not FLAGS.epochs > 0:
    raise ConfigError(f"--epochs must be positive, got {FLAGS.epochs}.")
  if FLAGS.skip_nonfinite_steps < 0:
    raise ConfigError(f"--skip_nonfinite_steps must be >= 0, got {FLAGS.skip_nonfinite_steps}.")
  if FLAGS.profile_steps:
    parse_profile_steps(FLAGS.profile_steps)
  if FLAGS.trace_graph and not FLAGS.summaries:
    raise ConfigError("--trace_graph writes to the summaries; it conflicts with --nosummaries.")
  if FLAGS.task_set == "toy" and (FLAGS.export_dir or FLAGS.data_dir):
    raise ConfigError("--export_dir and --data_dir apply to --task_set=conll2000 only.")


def tagger_config():
  """The TaggerConfig the flags describe (errors name the flag's field)."""
  return TaggerConfig(trunk=FLAGS.trunk, word_dim=FLAGS.word_dim,
                      char_filters=FLAGS.char_filters, hidden_size=FLAGS.hidden_size,
                      num_layers=FLAGS.num_layers, dropout=FLAGS.dropout,
                      word_dropout=FLAGS.word_dropout,
                      hierarchical=FLAGS.hierarchical, chunk_crf=FLAGS.chunk_crf)


def build_task_set(tasks, splits):
  if FLAGS.task_set == "toy":
    return task_sets.build_toy(tasks=tasks, batch_size=_setting("batch_size"), seed=FLAGS.seed)
  return task_sets.build_conll2000(tasks=tasks, batch_size=_setting("batch_size"),
                                   seed=FLAGS.seed, model_dir=FLAGS.model_dir, splits=splits,
                                   config=tagger_config())


def _adam(name, updates):
  """Adam at --learning_rate, decaying over `updates` updates as --lr_decay_start says."""
  schedule = None
  if _setting("lr_decay_start") < 1.0:
    schedule = LinearDecay(max(1, round(updates)), decay_start=_setting("lr_decay_start"),
                           final=FLAGS.lr_final)
  return Adam(_setting("learning_rate"), schedule=schedule, name=name)


def build_trainer(task_set, tasks, weights, total_steps):
  """The trainer for --mode, over the given TaskSet, for `total_steps` steps.

  In alternate mode each task's optimizer schedules over the updates its task is expected to
  get (total_steps x its sampling probability).
  """
  average = None
  if _setting("average_decay") > 0:
    average = WeightAverage(task_set.model.trainable_variables, decay=_setting("average_decay"))
  common = dict(model=task_set.model, tasks=task_set.tasks, seed=FLAGS.seed,
                jit_compile=FLAGS.xla, clip_norm=_setting("clip_norm"),
                max_nonfinite_steps=FLAGS.skip_nonfinite_steps, weight_average=average)
  if FLAGS.mode == "joint":
    return JointTrainer(optimizer=_adam("adam", total_steps),
                        dataset=task_set.joint_dataset, loss_weights=weights, **common)
  sampler = TaskSampler(tasks, None if weights is None else [weights[t] for t in tasks],
                        seed=FLAGS.seed)
  return AlternatingTrainer(
      optimizers={t: _adam(f"adam_{t}", total_steps * p)
                  for t, p in zip(tasks, sampler.probabilities)},
      datasets={t: task_set.task_datasets[t] for t in tasks}, sampler=sampler, **common)


def _callbacks(trainer, total_steps, config, task_set):
  """Progress lines, TensorBoard summaries and HParams, and the optional graph and profile."""
  callbacks = [ProgressLogger(total_steps, FLAGS.log_every)]
  if FLAGS.summaries:
    summaries = Summaries(FLAGS.model_dir, trainer)
    hparams = {k: v for k, v in config.items() if isinstance(v, (bool, int, float, str))}
    hparams["tasks"] = ",".join(config["tasks"])
    hparams.update({f"tagger.{k}": v for k, v in config.get("tagger", {}).items()})
    hparams["clip_norm"] = float(_setting("clip_norm") or 0.0)
    if FLAGS.task_weights:
      hparams["task_weights"] = ",".join(FLAGS.task_weights)
    metric_keys = ("pos_accuracy", "chunk_precision", "chunk_recall", "chunk_f1") if (
        task_set.evaluate) else ()
    summaries.write_hparams(hparams, metric_keys)
    callbacks.append(summaries)
    if FLAGS.trace_graph:
      callbacks.append(GraphTrace(summaries.train_writer))
  if FLAGS.profile_steps:
    start, stop = parse_profile_steps(FLAGS.profile_steps)
    callbacks.append(ProfileWindow(os.path.join(FLAGS.model_dir, "train"), start, stop))
  return callbacks


def run():
  """Builds everything from flags, trains, evaluates and exports; returns metrics or logs."""
  _check_flags()
  tasks = _task_list()
  weights = _task_weights(tasks)
  if FLAGS.deterministic:
    tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(FLAGS.seed)
  # Read (and check) the data before anything is written to --model_dir.
  splits = conll2000.load_splits(FLAGS.data_dir) if FLAGS.task_set == "conll2000" else None
  run_files.prepare_model_dir(FLAGS.model_dir)
  config = {"task_set": FLAGS.task_set, "mode": FLAGS.mode, "tasks": list(tasks),
            "seed": FLAGS.seed, "batch_size": _setting("batch_size"),
            "learning_rate": _setting("learning_rate"), "xla": FLAGS.xla,
            "lr_decay_start": _setting("lr_decay_start"), "lr_final": FLAGS.lr_final,
            "average_decay": _setting("average_decay")}
  if FLAGS.task_set == "conll2000":
    config["tagger"] = dataclasses.asdict(tagger_config())
  run_files.check_or_write_config(FLAGS.model_dir, config,
                                  must_match=("task_set", "mode", "tasks", "tagger", "seed",
                                              "batch_size"))
  task_set = build_task_set(tasks, splits)
  per_epoch = task_set.steps_per_epoch * (len(tasks) if FLAGS.mode == "alternate" else 1)
  total_steps = FLAGS.train_steps or max(1, round(_setting("epochs") * per_epoch))
  trainer = build_trainer(task_set, tasks, weights, total_steps)
  options = LoopOptions(total_steps=total_steps, steps_per_loop=FLAGS.steps_per_loop,
                        eval_every=_setting("eval_every"),
                        checkpoint_every=FLAGS.checkpoint_every)
  loop = TrainingLoop(trainer=trainer, model_dir=FLAGS.model_dir, options=options,
                      evaluate=task_set.evaluate, selection_metric=task_set.selection_metric,
                      callbacks=_callbacks(trainer, total_steps, config, task_set))
  start = time.time()
  with _stop_on_signals(loop):
    logs, _ = loop.run()
  if loop.stopped_early or task_set.evaluate is None:
    return logs
  return finish_conll(loop, task_set, tasks, config, total_steps, time.time() - start)


@contextlib.contextmanager
def _stop_on_signals(loop):
  """SIGTERM and SIGINT ask the loop to checkpoint after the current loop and return."""
  handlers = {}

  def handle(signum, frame):
    del frame
    loop.request_stop(signal.Signals(signum).name)

  for signum in (signal.SIGTERM, signal.SIGINT):
    handlers[signum] = signal.signal(signum, handle)
  try:
    yield
  finally:
    for signum, previous in handlers.items():
      signal.signal(signum, previous)


def finish_conll(loop, task_set, tasks, config, total_steps, train_seconds):
  """Evaluates the best-on-dev checkpoint on dev and test, writes metrics.json, exports."""
  best = loop.best_manager.latest_checkpoint
  if best:
    tf.train.Checkpoint(model=task_set.model).restore(best).assert_existing_objects_matched()
    logging.info("Evaluating the best-on-dev checkpoint %s.", best)
  metrics = {split: task_set.evaluate(split) for split in ("dev", "test")}
  summary = {split: {k: v for k, v in m.items() if "/" not in k} for split, m in metrics.items()}
  logging.info("final metrics: %s", summary)
  run_files.write_json(os.path.join(FLAGS.model_dir, "metrics.json"), {
      **metrics, "mode": FLAGS.mode, "tasks": list(tasks), "seed": FLAGS.seed,
      "steps": total_steps, "checkpoint": best or loop.manager.latest_checkpoint,
      "train_seconds_this_run": round(train_seconds, 1), "config": config})
  if FLAGS.export_dir:
    export_tagger(FLAGS.export_dir, task_set.model, task_set.extras["featurizer"],
                  task_set.extras["vocabularies"], task_sets.CONLL_TASKS)
    logging.info("Exported the model to %s.", FLAGS.export_dir)
  return metrics


def console_main():
  cli.run("mtl-train", run)


if __name__ == "__main__":
  console_main()
