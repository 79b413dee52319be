"""TensorBoard summaries: a `train` and an `eval` run in the model directory, and the HParams.

Everything here runs eagerly between compiled loops, from the LoopLogs the loop returned, at
the global step it ended on: nothing is written inside an XLA step, and writing summaries
cannot change what is trained. Every write is guarded by the ModelDir (a full disk is one
line, not a traceback).

Tags group by task in the UI: TASK/loss and every in-step metric a task declares
(TASK/METRIC), its throughput TASK/UNITS_per_sec; the evaluation's keys as the task set names
them; then throughput/examples_per_sec, throughput/UNITS_per_sec,
throughput/step_time_ms, optimizer/learning_rate/NAME, steps/TASK (batches each task has
received), epochs/TASK (passes over the data that task trains on), train/nonfinite_steps (the
run's skipped non-finite steps so far) and, with fp16, train/loss_scale_overflows (a loop's).
"""

import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from mtlcore.trainers.loop import Callback


class Summaries(Callback):
  """Writers for the train and eval runs of one ModelDir; a TrainingLoop callback."""

  def __init__(self, model_dir, trainer, steps_per_epoch=None):
    """Args:
      model_dir: the run's trainers.model_dir.ModelDir.
      trainer: the Trainer whose counters and optimizers are logged.
      steps_per_epoch: optional {task: batches in one pass over its data}, for epochs/TASK.
    """
    self.trainer = trainer
    self.model_dir = model_dir
    self.steps_per_epoch = dict(steps_per_epoch or {})
    with model_dir.guarded("the TensorBoard event files"):
      self.train_writer = tf.summary.create_file_writer(model_dir.train_run)
      self.eval_writer = tf.summary.create_file_writer(model_dir.eval_run)

  def on_loop_end(self, logs):
    """Writes one loop's logs at the global step it ended on."""
    seconds = max(logs.seconds, 1e-9)
    with self.model_dir.guarded("the TensorBoard train summaries"):
      with self.train_writer.as_default(step=logs.step):
        for key, value in logs.scalars().items():
          tf.summary.scalar(key, value)
        for task, task_logs in logs.tasks.items():
          if task_logs.steps:
            unit = self.trainer.tasks[task].units
            tf.summary.scalar(f"{task}/{unit}_per_sec", task_logs.units / seconds)
        tf.summary.scalar("throughput/examples_per_sec", logs.examples / seconds)
        if logs.unit != "examples":
          tf.summary.scalar(f"throughput/{logs.unit}_per_sec", logs.units / seconds)
        tf.summary.scalar("throughput/step_time_ms", 1000 * logs.seconds_per_step)
        for name, optimizer in self.trainer.optimizer_map().items():
          tf.summary.scalar(f"optimizer/learning_rate/{name}",
                            optimizer.current_learning_rate())
        for task, counter in self.trainer.task_steps.items():
          tf.summary.scalar(f"steps/{task}", counter)
          if task in self.steps_per_epoch:
            tf.summary.scalar(f"epochs/{task}",
                              int(counter.numpy()) / self.steps_per_epoch[task])
        tf.summary.scalar("steps/global", logs.step)
        tf.summary.scalar("train/nonfinite_steps", self.trainer.nonfinite_steps)
        if self.trainer.loss_scale is not None:
          tf.summary.scalar("train/loss_scale_overflows", logs.overflow_steps)
      self.train_writer.flush()

  def on_eval(self, step, metrics, is_best):
    del is_best
    with self.model_dir.guarded("the TensorBoard eval summaries"):
      with self.eval_writer.as_default(step=step):
        for key, value in metrics.items():
          tf.summary.scalar(key, value)
      self.eval_writer.flush()

  def write_hparams(self, hparams, metric_keys):
    """One HParams session per model directory: the run's settings and the eval metrics.

    Args:
      hparams: name -> bool, int, float or str.
      metric_keys: evaluation metric keys (TASK/METRIC) to show in the table.
    """
    writer = tf.summary.create_file_writer(self.model_dir.path)
    with writer.as_default():
      hp.hparams_config(hparams=[hp.HParam(name) for name in hparams],
                        metrics=[hp.Metric(k, group="eval", display_name=k) for k in metric_keys])
      hp.hparams(hparams, trial_id=os.path.basename(os.path.abspath(self.model_dir.path)))
    writer.flush()
    writer.close()

  def close(self):
    with self.model_dir.guarded("the TensorBoard event files"):
      self.train_writer.close()
      self.eval_writer.close()
