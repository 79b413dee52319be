"""--trace_graph and --profile_steps: a graph of the training loop and a profiler window.

Both work at loop granularity (steps_per_loop): the profiler starts before the first loop
that reaches step A and stops after the loop that reaches step B.
"""

import tensorflow as tf
from absl import logging

from mtlcore.trainers.loop import Callback


class GraphTrace(Callback):
  """Writes the graph of the first compiled loop (and its steps) to the train run, once."""

  def __init__(self, writer):
    self.writer = writer
    self.done = False

  def on_loop_begin(self, step):
    if not self.done:
      tf.summary.trace_on(graph=True, profiler=False)

  def on_loop_end(self, logs):
    if not self.done:
      with self.writer.as_default():
        tf.summary.trace_export(name="train_loop", step=logs.step)
      self.writer.flush()
      self.done = True


class ProfileWindow(Callback):
  """Captures a TensorFlow profiler trace of the steps in [start, stop) into `logdir`."""

  def __init__(self, logdir, start, stop):
    self.logdir, self.start, self.stop = logdir, start, stop
    self.running = False
    self.done = False

  def on_loop_begin(self, step):
    if not self.done and not self.running and step + 1 >= self.start and step < self.stop:
      tf.profiler.experimental.start(self.logdir)
      self.running = True

  def on_loop_end(self, logs):
    step = logs.step
    if self.running and step >= self.stop:
      tf.profiler.experimental.stop()
      self.running, self.done = False, True
      logging.info("Profiler trace up to step %d written to %s.", step, self.logdir)
