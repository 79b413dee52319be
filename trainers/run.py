"""One training run from a RunConfig: what mtl-train does, callable in-process as `train`.

  1. make the tf.distribute strategy (--strategy; the default one is a single device),
     resolve the config (task set, defaults) and read the data: a bad flag or file stops the
     run before anything is written;
  2. take the model directory (trainers.model_dir.ModelDir): create it, lock it, and on a
     resumed run compare the stored config with this one (trainers.config.RESUME_POLICY); a
     multi-worker run's other workers use a scratch directory instead (trainers.workers);
  3. build everything through trainers.build inside the strategy's scope, restore the latest
     checkpoint, apply a changed learning rate, and train with the outer loop (checkpoints,
     evaluation, summaries, progress); SIGTERM/SIGINT checkpoint and stop (every worker at
     the same step);
  4. evaluate the best checkpoint on every held-out split into metrics.json and export it
     (the chief only).
"""

import contextlib
import dataclasses
import os
import shutil
import signal
import tempfile
import time

import tensorflow as tf
from absl import logging

from mtlcore import files
from mtlcore import task_set as task_set_lib
from mtlcore.errors import ConfigError, Interrupted, MtlError, NonFiniteError
from mtlcore.trainers import build, warm_start, workers
from mtlcore.trainers import selection as selection_lib
from mtlcore.trainers.config import TASK_SET_IMPORT, RunConfig, per_replica_batch_size
from mtlcore.trainers.loop import LoopOptions, TrainingLoop
from mtlcore.trainers.model_dir import ModelDir
from mtlcore.trainers.profiling import GraphTrace, ProfileWindow
from mtlcore.trainers.progress import ProgressLogger, SkippedSteps
from mtlcore.trainers.summaries import Summaries


@dataclasses.dataclass
class TrainResult:
  """What `train` returns.

  Attributes:
    config: the resolved RunConfig.
    total_steps: the step training ends at.
    logs: the last loop's trainers.logs.LoopLogs (None if no step ran in this call).
    metrics: split -> {metric: value} of the best checkpoint, or {} (no held-out data, or
      stopped early).
    stopped_early: a signal stopped the run before total_steps.
  """
  config: object
  total_steps: int
  logs: object
  metrics: dict
  stopped_early: bool


def _stored_config(config):
  path = task_set_lib.import_path(config.task_set)
  return {**config.to_json(), **({TASK_SET_IMPORT: path} if path else {})}


def _check_resume(model_dir, config, task_set):
  """Refuses a resumed run whose config changes what its checkpoint fixed; logs (and stores)
  what it applies. An option the task set declared after the run was stored counts as its
  declared default there."""
  stored = model_dir.read_config()
  if stored is None:
    model_dir.write_json(model_dir.config_file, _stored_config(config))
    return
  RunConfig.from_json(stored, model_dir.config_file)  # One line for any malformed field.
  refused, applied = config.resume_changes(
      stored, {o.name: o.default for o in task_set.option_schema})
  if refused:
    details = ", ".join(f"--{k}: {old!r} -> {new!r}" for k, old, new in refused)
    raise ConfigError(f"--model_dir={model_dir.path} holds a run with different settings "
                      f"({details}); a resumed run cannot change them: use a new "
                      f"--model_dir or the original flags.")
  for name, old, new in applied:
    logging.info("Resumed run: --%s changed from %r to %r; applied from the restored step on.",
                 name, old, new)
  if applied:
    model_dir.write_json(model_dir.config_file, _stored_config(config))


def _apply_learning_rate(trainer, learning_rate):
  """The base rate is optimizer state in the checkpoint; the config's rate replaces it."""
  for name, optimizer in trainer.optimizer_map().items():
    restored = float(optimizer.learning_rate.numpy())
    if restored != float(learning_rate):
      optimizer.learning_rate.assign(learning_rate)
      logging.info("Optimizer %s: base learning rate %g from the checkpoint replaced by %g.",
                   name, restored, learning_rate)


def _callbacks(config, model_dir, trainer, total_steps, metric_keys, steps_per_epoch):
  callbacks = [ProgressLogger(total_steps, config.log_every),
               SkippedSteps(trainer, config.skip_nonfinite_steps)]
  if config.summaries:
    summaries = Summaries(model_dir, trainer, steps_per_epoch)
    with model_dir.guarded("the TensorBoard HParams"):
      summaries.write_hparams(hparams(config), metric_keys)
    callbacks.append(summaries)
    if config.trace_graph:
      callbacks.append(GraphTrace(summaries.train_writer))
  if config.profile_steps:
    callbacks.append(ProfileWindow(model_dir.train_run, *config.profile_steps))
  return callbacks


def _close_summaries(callbacks):
  for callback in callbacks:
    if isinstance(callback, Summaries):
      callback.close()


def hparams(config):
  """The config as TensorBoard HParams: scalars as they are, lists joined, options.NAME."""
  values = {}
  for key, value in config.to_json().items():
    if key == "options":
      values.update({f"options.{k}": v if isinstance(v, (bool, int, float, str)) else str(v)
                     for k, v in value.items()})
    elif isinstance(value, (bool, int, float, str)):
      values[key] = value
    elif isinstance(value, list):
      values[key] = ",".join(str(v) for v in value)
  return values


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


# What a SIGINT/SIGTERM outside the training loop leaves (mtlcore.errors.Interrupted.state),
# by the part of the run it came in.
_STATES = {
    "start": "before training; the model directory's checkpoints are as they were, and a "
             "rerun of the same command starts or resumes the run",
    "evaluation": "during the final evaluation; training is complete and checkpointed, "
                  "metrics.json was not written: a rerun of the same command evaluates and "
                  "exports without training",
    "export": "during the export; metrics.json is written and an earlier export is intact: a "
              "rerun of the same command exports without training",
}


class _Part:
  """The part of the run going on, for the Interrupted error."""
  now = "start"


def train(config):
  """Trains as `config` says; returns a TrainResult. Errors a user can fix are MtlError; a
  SIGINT/SIGTERM that a binary turned into mtlcore.errors.Interrupted outside the training
  loop (which checkpoints and returns instead) comes back with what the run left."""
  part = _Part()
  try:
    return _prepare_and_train(config, part)
  except Interrupted as e:
    raise Interrupted(e.signal_name, e.exit_code, _STATES[part.now]) from None


def _prepare_and_train(config, part):
  strategy = build.make_strategy(config)  # First: it may split the CPU into devices.
  resolved = build.resolve(config)
  config, task_set = resolved.config, resolved.task_set
  if not config.model_dir:
    raise ConfigError("--model_dir is required: checkpoints and logs go there.")
  per_replica_batch_size(config.batch_size, strategy.num_replicas_in_sync)  # Before any write.
  problem = task_set.export_problem(config.tasks) if config.export_dir else None
  if problem:
    raise ConfigError(f"--export_dir with --task_set={config.task_set}: {problem}.")
  if config.export_dir:  # Refused now, not after training.
    files.check_output_directory(config.export_dir, **_export_rules(config))
  if config.deterministic:
    tf.config.experimental.enable_op_determinism()
    tf.random.set_seed(config.seed)
  if config.init_from and ModelDir(config.init_from).read_config() is None:
    raise ConfigError(f"--init_from={config.init_from} is not a model directory written by "
                      f"mtl-train (no config.json).")
  data = task_set.load_data(config.data_dir)  # Read and checked before anything is written.
  role = workers.role_of(strategy)
  if role.chief:
    model_dir, restore_from = ModelDir(config.model_dir).prepare(), None
  else:  # Trains in step with the chief; its writes go to a directory removed at exit.
    model_dir = ModelDir(tempfile.mkdtemp(prefix=f"mtl-train-{role.task_type}{role.index}-"))
    model_dir.prepare()
    restore_from = ModelDir(config.model_dir).checkpoints
  try:
    return _train(config, task_set, data, strategy, role, model_dir, restore_from, part)
  finally:
    if not role.chief:
      shutil.rmtree(model_dir.path, ignore_errors=True)


def _train(config, task_set, data, strategy, role, model_dir, restore_from, part):
  with model_dir:
    if role.chief:
      _check_resume(model_dir, config, task_set)
    else:
      config = dataclasses.replace(config, summaries=False, trace_graph=False,
                                   profile_steps=None, export_dir=None)
    fresh = tf.train.latest_checkpoint(restore_from or model_dir.checkpoints) is None
    if config.init_from and fresh:
      warm_start.copy_assets(config.init_from, model_dir)
    with strategy.scope():  # Every variable (model, optimizer slots, counters) is made in it.
      with model_dir.guarded("the task set's assets"):
        model, tasks = build.build_model(config, task_set, assets_dir=model_dir.assets,
                                         data=data)
      if config.init_from and fresh:
        warm_start.warm_start(model, config.init_from)
      streams = build.make_streams(config, task_set, data,
                                   replicas=strategy.num_replicas_in_sync)
      total = build.total_steps(config, streams)
      trainer = build.build_trainer(config, model=model, tasks=tasks, streams=streams,
                                    total_steps=total)
    if config.checkpoint_iterators:
      _checkpoint_iterators(trainer)
    selection, per_task = selection_lib.make_rules(config, task_set, tasks)
    evaluate = None
    if task_set.splits and role.chief:
      evaluate = lambda: task_set.evaluate(model, data, config.tasks, task_set.splits[0])
    options = LoopOptions(total_steps=total, steps_per_loop=config.steps_per_loop,
                          eval_every=config.eval_every, checkpoint_every=config.checkpoint_every,
                          keep_checkpoints=config.keep_checkpoints)
    metric_keys = task_set.selection_keys(config.tasks)
    per_epoch = build.steps_per_epoch(config, streams)
    callbacks = _callbacks(config, model_dir, trainer, total, metric_keys, per_epoch)
    agree = None
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      agree = workers.StopAgreement(strategy)
    with strategy.scope():
      loop = TrainingLoop(trainer=trainer, model_dir=model_dir, options=options,
                          evaluate=evaluate, selection=selection, per_task=per_task,
                          callbacks=callbacks,
                          restore_from=restore_from, agree_to_stop=agree)
    if loop.restore():
      _apply_learning_rate(trainer, config.learning_rate)
    start = time.time()
    try:
      with _stop_on_signals(loop):
        logs, _ = loop.run()
      trainer.close()  # The iterators go now, not at a later collection.
    except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError) as e:
      with contextlib.suppress(MtlError):
        _close_summaries(callbacks)
      raise workers.PeerTimeout(
          f"{role.name}: a peer worker stopped answering near step "
          f"{int(trainer.global_step.numpy())} ({type(e).__name__}); the last checkpoint is "
          f"intact: restart every worker to resume.") from None
    except BaseException:
      trainer.close()
      with contextlib.suppress(MtlError):  # The error already on its way is the one to tell.
        _close_summaries(callbacks)
      raise
    _close_summaries(callbacks)
    logging.info("Passes over each task's training data: %s.", ", ".join(
        f"{t} {int(trainer.task_steps[t].numpy()) / per_epoch[t]:.2f}" for t in config.tasks))
    skipped = _check_skipped(trainer, next(c for c in callbacks if isinstance(c, SkippedSteps)))
    result = TrainResult(config=config, total_steps=total, logs=logs, metrics={},
                         stopped_early=loop.stopped_early)
    if not loop.stopped_early and role.chief:
      result.metrics = _finish(config, task_set, model, data, loop, model_dir, total,
                               time.time() - start, part)
    logging.info("%s at step %d of %d: %s.", "Stopped" if loop.stopped_early else "Finished",
                 int(trainer.global_step.numpy()), total, skipped)
    return result


def _checkpoint_iterators(trainer):
  """Puts the input iterators into the checkpoint where they can be, and says in one line
  what that costs and which streams keep resuming by position (and why)."""
  report = trainer.checkpoint_inputs()
  saved = {k: size for k, (size, _) in report.items() if size is not None}
  kept = {k: why for k, (_, why) in report.items() if why is not None}
  parts = []
  if saved:
    parts.append(f"saved in the checkpoint: {', '.join(saved)} "
                 f"(+{sum(saved.values()) / 1024:.1f} KB per checkpoint)")
  if kept:
    parts.append("resuming by position, as their iterators cannot be saved: " + "; ".join(
        f"{k} ({why})" for k, why in kept.items()))
  logging.info("--checkpoint_iterators: input streams %s.", "; ".join(parts))


def _check_skipped(trainer, skipped_steps):
  """The run's skipped steps in words; NonFiniteError when they are more than half of all
  steps (the model did not train, whatever --skip_nonfinite_steps allowed)."""
  step, skipped = int(trainer.global_step.numpy()), int(trainer.nonfinite_steps.numpy())
  if step and 2 * skipped > step:
    raise NonFiniteError(
        f"{skipped} of the {step} steps were skipped as non-finite (NaN/Inf loss or gradient): "
        f"more than half, so the model did not train; the checkpoint at step {step} is "
        f"written, metrics and export are not. Lower --learning_rate or set --clip_norm.")
  summary = f"{skipped} step(s) skipped as non-finite"
  if skipped_steps.overflows:
    summary += f", {skipped_steps.overflows} fp16 loss-scale overflow(s) skipped in this run"
  return summary


def _export_rules(config):
  """The rules of mtlcore.files for the run's export: it replaces its own earlier export."""
  return {"kind": "export", "source": os.path.realpath(config.model_dir),
          "overwrite": config.overwrite, "flag": "--export_dir"}


def _finish(config, task_set, model, data, loop, model_dir, total, train_seconds, part):
  """Evaluates the best-on-dev checkpoint (the last weights, with no held-out data) on every
  split into metrics.json, and exports it."""
  part.now = "evaluation"
  best = None
  if loop.best_manager.latest_checkpoint:
    best = model_dir.restore_model(model, "best")
    logging.info("Evaluating the best-on-dev checkpoint %s.", best)
  metrics = {}
  if task_set.splits:
    metrics = _write_metrics(config, task_set, model, data, loop, model_dir, total,
                             train_seconds, best)
  if config.export_dir:
    part.now = "export"
    with loop.trainer.evaluation_weights() if not best else contextlib.nullcontext():
      with model_dir.guarded(f"the export to {config.export_dir}"):
        files.write_output_directory(
            config.export_dir, lambda directory: task_set.export(model, config.tasks, directory),
            **_export_rules(config))
    logging.info("Exported the model to %s.", config.export_dir)
  return metrics


def _write_metrics(config, task_set, model, data, loop, model_dir, total, train_seconds, best):
  metrics = {split: task_set.evaluate(model, data, config.tasks, split)
             for split in task_set.splits}
  logging.info("final metrics: %s", {split: {k: round(v, 2) for k, v in m.items()
                                              if not task_set.is_detail_metric(k)}
                                      for split, m in metrics.items()})
  chosen = {}
  if loop.selection is not None:
    chosen["selection"] = {**loop.selection.describe(),
                           "best_score": float(loop.best_metric.numpy())}
  if loop.per_task:
    chosen["best_per_task"] = _best_per_task(task_set, model, data, loop, model_dir)
    if best:  # The export that follows serves the overall best again.
      model_dir.restore_model(model, "best")
  model_dir.write_metrics({
      **metrics, "mode": config.mode, "tasks": list(config.tasks), "seed": config.seed,
      "steps": total, "checkpoint": best or loop.manager.latest_checkpoint, **chosen,
      "train_seconds_this_run": round(train_seconds, 1), "config": config.to_json()})
  return metrics


def _best_per_task(task_set, model, data, loop, model_dir):
  """{task: its rule, best score, checkpoint (best/TASK/) and that checkpoint's metrics of
  the task on every split}; the model is left holding the last task's best weights."""
  result = {}
  for task, rule in loop.per_task.items():
    if not loop.task_best_managers[task].latest_checkpoint:
      continue
    path = model_dir.restore_model(model, f"best/{task}")
    result[task] = {**rule.describe(), "best_score": float(loop.best_per_task[task].numpy()),
                    "checkpoint": path,
                    **{split: task_set.evaluate(model, data, [task], split)
                       for split in task_set.splits}}
    logging.info("Task %s's best checkpoint %s: %s.", task, path,
                 {k: round(v, 3) for k, v in result[task][task_set.splits[0]].items()})
  return result


def restore(model_dir_path, *, which="best", data_dir=None, load_data=True, tasks=(),
            evaluation_options=None):
  """Rebuilds the model a model directory describes and restores its weights (mtl-eval).

  Args:
    model_dir_path: the run's directory.
    which: "best" or "latest" (ModelDir.restore_model).
    data_dir: where to read the data (default: the run's).
    load_data: whether to read it.
    tasks: a subset of the run's tasks to keep in the returned config (default: all).
    evaluation_options: {option: value} replacing the run's, only among the task set's
      `evaluation_options` (e.g. another test file); ConfigError for any other.

  Returns:
    (resolved config, task set, model, data or None, path of the restored checkpoint).
  """
  model_dir = ModelDir(model_dir_path)
  stored = model_dir.read_config()
  if stored is None:
    raise ConfigError(f"{model_dir.config_file} does not exist; is this a model directory "
                      f"written by mtl-train?")
  stored_config = RunConfig.from_json(stored, model_dir.config_file)
  recorded = stored.get(TASK_SET_IMPORT)
  if not isinstance(recorded, (str, type(None))):
    raise ConfigError(f"{model_dir.config_file}: field {TASK_SET_IMPORT!r} must be a string.")
  resolved = build.resolve(stored_config, recorded_path=recorded)
  if evaluation_options:
    fixed = sorted(set(evaluation_options) - set(resolved.task_set.evaluation_options))
    if fixed:
      allowed = [f"--{o}" for o in resolved.task_set.evaluation_options] or "none"
      raise ConfigError(f"{', '.join('--' + o for o in fixed)} cannot change the model "
                        f"{model_dir.config_file} describes (of --task_set="
                        f"{stored_config.task_set}, options that choose evaluation data: "
                        f"{allowed}).")
    resolved = build.resolve(dataclasses.replace(
        resolved.config, options={**resolved.config.options, **evaluation_options}),
                             recorded_path=recorded)
  config, task_set = resolved.config, resolved.task_set
  if tasks:
    unknown = [t for t in tasks if t not in config.tasks]
    if unknown:
      raise ConfigError(f"--tasks={','.join(tasks)}: the run trained {list(config.tasks)}, "
                        f"not {unknown}.")
    config = dataclasses.replace(config, tasks=tuple(t for t in config.tasks if t in tasks))
  data = task_set.load_data(data_dir or config.data_dir) if load_data else None
  model, _ = build.build_model(config, task_set, assets_dir=model_dir.assets, data=None)
  path = model_dir.restore_model(model, which)
  return config, task_set, model, data, path
