"""--trace_graph and --profile_steps: a graph of the training loop and a profiler window.

Both work at loop granularity (steps_per_loop): the profiler starts before the first loop
that reaches step A and stops after the loop that reaches step B.
"""

import tensorflow as tf
from absl import logging

from mtlcore.errors import ConfigError
from trainers.loop import Callback


def parse_profile_steps(text):
  """'A,B' -> (A, B) with 0 <= A < B; raises ConfigError naming the flag."""
  try:
    start, stop = (int(x) for x in text.split(","))
  except ValueError:
    raise ConfigError(f"--profile_steps must be two integers A,B, got {text!r}.") from None
  if not 0 <= start < stop:
    raise ConfigError(f"--profile_steps needs 0 <= A < B, got {start},{stop}.")
  return start, stop


class GraphTrace(Callback):
  """Writes the graph of the first compiled loop (and its steps) to the train run, once."""

  def __init__(self, writer):
    self.writer = writer
    self.done = False

  def on_loop_begin(self, step):
    if not self.done:
      tf.summary.trace_on(graph=True, profiler=False)

  def on_loop_end(self, step, logs):
    if not self.done:
      with self.writer.as_default():
        tf.summary.trace_export(name="train_loop", step=step)
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

  def on_loop_end(self, step, logs):
    if self.running and step >= self.stop:
      tf.profiler.experimental.stop()
      self.running, self.done = False, True
      logging.info("Profiler trace up to step %d written to %s.", step, self.logdir)
