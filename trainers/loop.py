"""The outer training loop: when to train, log, evaluate and checkpoint.

It runs eagerly around a Trainer (Orbit's Controller): the trainer runs `steps_per_loop`
compiled steps per call, and between calls this loop decides what else is due. The trainer
knows nothing of wall-clock time, files or evaluation.
"""

import dataclasses
import os
import time
from collections.abc import Callable

import tensorflow as tf
from absl import logging

from mtlcore.errors import ConfigError, require_positive
from mtlcore.trainers import model_dir as model_dir_lib


@dataclasses.dataclass(frozen=True)
class LoopOptions:
  """How the outer loop runs.

  Attributes:
    total_steps: global step at which training ends.
    steps_per_loop: steps per call into the compiled loop; logs and evaluations fall on
      multiples of it.
    eval_every: evaluate every this many steps, and at the end; 0 for only at the end.
    checkpoint_every: write a checkpoint every this many steps, and at the end.
    keep_checkpoints: how many recent checkpoints to keep.
  """
  total_steps: int
  steps_per_loop: int = 50
  eval_every: int = 0
  checkpoint_every: int = 500
  keep_checkpoints: int = 3

  def __post_init__(self):
    for field in ("total_steps", "steps_per_loop", "checkpoint_every",
                  "keep_checkpoints"):
      require_positive(field, getattr(self, field))
    if not isinstance(self.eval_every, int) or self.eval_every < 0:
      raise ConfigError(f"eval_every must be a non-negative integer, got {self.eval_every!r}.")


def _due(step, previous, every):
  return every > 0 and step // every > previous // every


class Callback:
  """What the loop tells observers (progress lines, summaries, the profiler); all eager."""

  def on_loop_begin(self, step):
    """Before a call into the compiled loop that starts at global step `step`."""

  def on_loop_end(self, logs):
    """After it, with its trainers.logs.LoopLogs (timed)."""

  def on_eval(self, step, metrics, is_best):
    """After an evaluation at `step`; `is_best` if it improved the selection metric."""


class TrainingLoop:
  """Drives a trainer to `total_steps`, resuming from the latest checkpoint in `model_dir`.

  `evaluate` (optional) is called eagerly with no arguments and returns {metric: value};
  `selection` (a trainers.selection.Rule) scores it, and the evaluation of the highest score
  so far has its weights kept apart in the model directory's best/; each of `per_task`'s
  rules ({task: Rule}) keeps its own best in best/TASK/. All see the model with
  `trainer.evaluation_weights()` swapped in. `callbacks` are Callback objects, told of every
  loop and evaluation. `model_dir` is a trainers.model_dir.ModelDir: it owns the checkpoints'
  layout and guards their writes.
  """

  def __init__(self, *, trainer, model_dir, options, evaluate: Callable | None = None,
               selection=None, per_task=None, callbacks=(), restore_from=None,
               agree_to_stop=None):
    """restore_from: a checkpoint directory to restore from instead of the model directory's
    own (a multi-worker chief's, for the other workers). agree_to_stop: `asked -> bool`,
    called after every loop with whether this process was asked to stop; the loop stops when
    it returns True (trainers.workers.StopAgreement: all workers stop at the same step)."""
    self.trainer = trainer
    self.model_dir = model_dir
    self.options = options
    self.evaluate = evaluate
    self.selection = selection
    self.per_task = dict(per_task or {})
    self.callbacks = list(callbacks)
    self.restore_from = restore_from
    self.agree_to_stop = agree_to_stop
    self._stop_reason = None
    self._restored = False
    self.restored_path = None
    self.stopped_early = False
    self.best_metric = tf.Variable(float("-inf"), trainable=False, name="best_metric")
    # Each task's best score so far, when per_task (absent otherwise: the checkpoint's layout
    # stays that of earlier versions).
    self.best_per_task = {t: tf.Variable(float("-inf"), trainable=False, name=f"best_{t}")
                          for t in self.per_task}
    self.manager = model_dir.training_checkpoint(trainer, self.best_metric,
                                                 max_to_keep=options.keep_checkpoints,
                                                 best_per_task=self.best_per_task)
    self.checkpoint = self.manager.checkpoint
    self.best_manager = model_dir.best_checkpoint(trainer.model, trainer.global_step)
    self.task_best_managers = {t: model_dir.best_checkpoint(trainer.model, trainer.global_step,
                                                            task=t)
                               for t in self.per_task}

  def restore(self):
    """Restores the newest readable checkpoint, if any; returns its path or None. `run`
    calls it unless it was called before.

    A checkpoint that cannot be read (e.g. its files were cut short by a crash) is skipped
    with a warning, and the one before it is used; the candidates are the checkpoints on
    disk (ModelDir.recover_checkpoint_state), so a lost state file never restarts at step 0.
    """
    self._restored = True
    candidates = self.manager.checkpoints
    if self.restore_from is not None:
      state = tf.train.get_checkpoint_state(self.restore_from)
      candidates = list(state.all_model_checkpoint_paths) if state else []
    newest_problem = None
    for path in reversed(candidates):
      # Read in full first: a restore that fails part-way has assigned some variables.
      problem = model_dir_lib.readable(path)
      if problem is None:
        try:
          self.checkpoint.restore(path).assert_existing_objects_matched()
        except (tf.errors.OpError, ValueError, AssertionError, IndexError, OSError) as e:
          problem = str(e).splitlines()[0][:200]
      if problem is not None:
        logging.warning("Checkpoint %s is unreadable (%s); trying the one before it.", path,
                        problem)
        newest_problem = newest_problem or f"{os.path.basename(path)}: {problem}"
        continue
      logging.info("Resumed from %s at step %d.", path, int(self.trainer.global_step.numpy()))
      self.restored_path = path
      return path
    if candidates:
      raise ConfigError(f"No checkpoint in {self.restore_from or self.manager.directory} can "
                        f"be read (the newest, {newest_problem}); resume with the code that "
                        f"wrote them, or move them away to start afresh.")
    return None

  def request_stop(self, reason):
    """Asks the loop to checkpoint and return after the current call into the trainer (safe
    to call from a signal handler)."""
    self._stop_reason = reason

  def _evaluate(self, step):
    if self.evaluate is None:
      return None
    is_best = False
    # Evaluate, and keep as best, the weights the trainer says to evaluate (e.g. averages).
    with self.trainer.evaluation_weights():
      metrics = self.evaluate()
      if self.selection is not None:
        value = self.selection.score(metrics)
        if value > float(self.best_metric.numpy()):
          with self.model_dir.guarded(f"the best checkpoint at step {step}"):
            self.best_manager.save(checkpoint_number=step)
          self.best_metric.assign(value)
          is_best = True
      for task, rule in self.per_task.items():
        value = rule.score(metrics)
        if value > float(self.best_per_task[task].numpy()):
          with self.model_dir.guarded(f"task {task}'s best checkpoint at step {step}"):
            self.task_best_managers[task].save(checkpoint_number=step)
          self.best_per_task[task].assign(value)
    for callback in self.callbacks:
      callback.on_eval(step, metrics, is_best)
    return metrics

  def _save(self, step):
    with self.model_dir.guarded(f"the checkpoint at step {step}"):
      self.manager.save(checkpoint_number=step)

  def run(self):
    """Trains to `total_steps`; returns the last LoopLogs (or None) and the last evaluation's
    metrics.

    Evaluates and checkpoints at the end unless that already happened at the final step
    (also when a previous run had already finished and this one only resumed).
    """
    opts = self.options
    if not self._restored:
      self.restore()
    step = int(self.trainer.global_step.numpy())
    last_save = step if self.restored_path else None
    logs, metrics, last_eval = None, None, None
    while step < opts.total_steps:
      n = min(opts.steps_per_loop, opts.total_steps - step)
      for callback in self.callbacks:
        callback.on_loop_begin(step)
      loop_start = time.time()
      logs = self.trainer.train(n)
      logs = dataclasses.replace(logs, seconds=time.time() - loop_start)
      previous, step = step, logs.step
      for callback in self.callbacks:
        callback.on_loop_end(logs)
      if self.agree_to_stop is not None and self.agree_to_stop(self._stop_reason is not None):
        self._stop_reason = self._stop_reason or "another worker was asked to stop"
      if _due(step, previous, opts.eval_every):
        metrics, last_eval = self._evaluate(step), step
      if _due(step, previous, opts.checkpoint_every) or self._stop_reason:
        self._save(step)
        last_save = step
      if self._stop_reason:
        logging.info("Stopping at step %d (%s); checkpoint written, a restart continues from it.",
                     step, self._stop_reason)
        self.stopped_early = True
        return logs, metrics
    if last_eval != step:
      metrics = self._evaluate(step)
    if last_save != step:
      self._save(step)
    return logs, metrics
