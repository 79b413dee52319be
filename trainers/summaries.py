"""TensorBoard summaries: a `train` and an `eval` run under --model_dir, and the HParams.

Everything here runs eagerly between compiled loops, from values the loop returned, with the
step taken from the trainer's global step variable: nothing is written inside an XLA step, and
writing summaries cannot change what is trained.

Tags group by task in the UI: `pos/loss`, `pos/accuracy`, `chunk/f1`, `chunk_f1_by_type/NP`;
then `throughput/...`, `optimizer/learning_rate/NAME`, `steps/TASK` (batches each task has
received) and `train/nonfinite_steps`.
"""

import os

import tensorflow as tf
from tensorboard.plugins.hparams import api as hp

from trainers.loop import Callback

# Eval metric keys (mtlcore.tagging.score) -> TensorBoard tags.
_EVAL_TAGS = {"pos_accuracy": "pos/accuracy", "chunk_precision": "chunk/precision",
              "chunk_recall": "chunk/recall", "chunk_f1": "chunk/f1",
              "chunk_accuracy": "chunk/accuracy"}


def eval_tag(key):
  if key in _EVAL_TAGS:
    return _EVAL_TAGS[key]
  if key.startswith("chunk_f1/"):
    return "chunk_f1_by_type/" + key.split("/", 1)[1]
  return key


class Summaries(Callback):
  """Writers for the train and eval runs of one model_dir; a TrainingLoop callback."""

  def __init__(self, model_dir, trainer):
    self.trainer = trainer
    self.train_writer = tf.summary.create_file_writer(os.path.join(model_dir, "train"))
    self.eval_writer = tf.summary.create_file_writer(os.path.join(model_dir, "eval"))
    self.model_dir = model_dir

  def _optimizers(self):
    if hasattr(self.trainer, "optimizers"):
      return dict(self.trainer.optimizers)
    return {"joint": self.trainer.optimizer}

  def on_loop_end(self, step, logs):
    """Writes one loop's logs at the global step it ended on."""
    seconds = logs["loop_seconds"]
    with self.train_writer.as_default(step=step):
      for key, value in logs.items():
        task, _, metric = key.partition("/")
        if metric in ("loss", "accuracy"):
          tf.summary.scalar(key, value)
      tf.summary.scalar("throughput/examples_per_sec", logs["examples_in_loop"] / seconds)
      tf.summary.scalar("throughput/tokens_per_sec", logs["tokens_in_loop"] / seconds)
      tf.summary.scalar("throughput/step_time_ms", 1000 * logs["seconds_per_step"])
      for name, optimizer in self._optimizers().items():
        tf.summary.scalar(f"optimizer/learning_rate/{name}",
                          optimizer.current_learning_rate())
      for task, counter in self.trainer.task_steps.items():
        tf.summary.scalar(f"steps/{task}", counter)
      tf.summary.scalar("steps/global", step)
      tf.summary.scalar("train/nonfinite_steps", self.trainer.nonfinite_steps)
    self.train_writer.flush()

  def on_eval(self, step, metrics, is_best):
    del is_best
    with self.eval_writer.as_default(step=step):
      for key, value in metrics.items():
        tf.summary.scalar(eval_tag(key), value)
    self.eval_writer.flush()

  def write_hparams(self, hparams, metric_keys):
    """One HParams session per model_dir: the run's settings and the eval metrics it reports.

    Args:
      hparams: name -> bool, int, float or str.
      metric_keys: eval metric keys (as from mtlcore.tagging.score) to show in the table.
    """
    writer = tf.summary.create_file_writer(self.model_dir)
    with writer.as_default():
      hp.hparams_config(
          hparams=[hp.HParam(name) for name in hparams],
          metrics=[hp.Metric(eval_tag(k), group="eval", display_name=eval_tag(k))
                   for k in metric_keys])
      hp.hparams(hparams, trial_id=os.path.basename(os.path.abspath(self.model_dir)))
    writer.flush()
    writer.close()

  def close(self):
    self.train_writer.close()
    self.eval_writer.close()
