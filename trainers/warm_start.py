"""Warm start: a new run begins from another run's trunk and from its heads that fit.

The source is a model directory written by mtl-train: its best-on-dev checkpoint, else its
latest. The trunk must match in every variable's shape (a different vocabulary or size is one
line naming the variable and both shapes); a head is copied when the source trained a task of
the same name with the same shapes, and otherwise keeps its fresh initial values. The source's
assets (e.g. vocabularies) are copied first, so ids mean the same in both runs.
"""

import os
import shutil

import tensorflow as tf
from absl import logging

from mtlcore.errors import ConfigError
from mtlcore.trainers.model_dir import ModelDir


def copy_assets(source_path, model_dir):
  """Copies the source run's assets that model_dir does not have yet (before the model is
  built, so the task set reuses them)."""
  source = ModelDir(source_path)
  if source.read_config() is None:
    raise ConfigError(f"--init_from={source_path} is not a model directory written by "
                      f"mtl-train (no config.json).")
  if os.path.isdir(source.assets):
    for name in os.listdir(source.assets):
      target = os.path.join(model_dir.assets, name)
      if not os.path.exists(target):
        with model_dir.guarded(f"the assets copied from --init_from ({name})"):
          shutil.copy2(os.path.join(source.assets, name), target)


def _restore(path, best, *, trunk=None, heads=None):
  """Restores the given trunk and heads (by the model's attribute names) from a checkpoint."""
  parts = {}
  if trunk is not None:
    parts["trunk"] = trunk
  if heads:
    parts["heads"] = heads
  model = tf.train.Checkpoint(**parts)
  root = (tf.train.Checkpoint(model=model) if best
          else tf.train.Checkpoint(trainer=tf.train.Checkpoint(model=model)))
  root.restore(path).expect_partial().assert_existing_objects_matched()


def warm_start(model, source_path):
  """Copies the source's trunk into `model`, and every head that fits; returns the names of
  the heads copied."""
  source = ModelDir(source_path)
  best = tf.train.latest_checkpoint(source.best)
  path = best or tf.train.latest_checkpoint(source.checkpoints)
  if not path:
    raise ConfigError(f"--init_from={source_path} holds no checkpoint.")
  try:
    _restore(path, bool(best), trunk=model.trunk)
  except (ValueError, AssertionError, tf.errors.OpError) as e:
    raise ConfigError(f"--init_from={source_path}: its trunk does not fit this run's "
                      f"({str(e).splitlines()[0][:300]}).") from None
  source_tasks = source.read_config().get("tasks", [])
  copied = []
  for task, head in model.heads.items():
    if task not in source_tasks:
      continue
    fresh = [v.numpy() for v in head.variables]
    try:
      _restore(path, bool(best), heads={task: head})
      copied.append(task)
    except (ValueError, AssertionError, tf.errors.OpError):
      for variable, value in zip(head.variables, fresh):
        variable.assign(value)
  logging.info("Warm start from %s: trunk and heads %s copied; %s start fresh.", path, copied,
               [t for t in model.heads if t not in copied])
  return copied
