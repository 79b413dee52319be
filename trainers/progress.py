"""Terminal progress: one log line per log interval, a table after each evaluation, a bar
refreshed in place when stderr is a terminal, and a line for the first skipped non-finite step
and every SkippedSteps.every-th after it.

Nothing is printed per step: the line is formatted from the LoopLogs of finished loops. It
shows every metric each task reports (TASK/loss and its in-step metrics, averaged over the
interval's loops weighted by their steps), ms/step and the throughput in the tasks' unit. The
ETA is the steady state's: the time per step of the loops after the first one of this process,
whose call compiles the steps (until a second loop has run, the first loop's time).
"""

import shutil
import sys
import time

from absl import logging

from mtlcore.trainers.loop import Callback


class ProgressLogger(Callback):
  """Logs step / total, elapsed, ETA, every task metric and throughput every `log_every`
  steps; `write` (default absl's logging.info) takes a %-format and its arguments. When
  `stream` (default sys.stderr) is a terminal, a bar on its last line shows step / total,
  rate, ETA and the latest losses after every loop, cleared before each log line."""

  def __init__(self, total_steps, log_every, write=logging.info, stream=None):
    self.total_steps = total_steps
    self.log_every = log_every
    self.write = write
    self.stream = sys.stderr if stream is None else stream
    self._start = None
    self._start_step = 0
    self._loops = 0
    self._steady_seconds = self._steady_steps = 0.0
    self._bar_shown = False
    self._reset()

  def _reset(self):
    self._units = self._seconds = 0.0
    self._steps = 0
    self._sums = {}

  def _terminal(self):
    isatty = getattr(self.stream, "isatty", None)
    return bool(isatty and isatty())

  def on_loop_begin(self, step):
    if self._start is None:
      self._start, self._start_step = time.time(), step

  def eta(self, step):
    """Seconds left at `step`, at the steady state's time per step."""
    if self._steady_steps:
      per_step = self._steady_seconds / self._steady_steps
    else:
      per_step = (time.time() - self._start) / max(step - self._start_step, 1)
    return per_step * (self.total_steps - step)

  def on_loop_end(self, logs):
    self._loops += 1
    if self._loops > 1:  # The first loop of a process compiles.
      self._steady_seconds += logs.seconds
      self._steady_steps += logs.steps
    self._units += logs.units
    self._seconds += logs.seconds
    self._steps += logs.steps
    for task, task_logs in logs.tasks.items():
      for name, value in task_logs.metrics.items():
        if task_logs.steps:
          total, weight = self._sums.get(f"{task}/{name}", (0.0, 0))
          self._sums[f"{task}/{name}"] = (total + value * task_logs.steps,
                                          weight + task_logs.steps)
    step, previous = logs.step, logs.step - logs.steps
    if step // self.log_every == previous // self.log_every and step < self.total_steps:
      self._bar(logs)
      return
    self._clear_bar()
    elapsed = time.time() - self._start
    metrics = "  ".join(f"{k}={total / weight:.4f}"
                        for k, (total, weight) in sorted(self._sums.items()))
    rate = self._units / self._seconds if self._seconds else 0.0
    ms = 1000 * self._seconds / max(self._steps, 1)
    self.write("step %d/%d  elapsed %.0fs  eta %.0fs  %s  %.1f ms/step  %.0f %s/s", step,
               self.total_steps, elapsed, self.eta(step), metrics, ms, rate, logs.unit)
    self._reset()

  def _bar(self, logs):
    if not self._terminal():
      return
    width = shutil.get_terminal_size((100, 20)).columns
    done = logs.step / max(self.total_steps, 1)
    losses = " ".join(f"{task}={t.metrics['loss']:.3f}" for task, t in logs.tasks.items()
                      if t.steps and "loss" in t.metrics)
    text = (f"step {logs.step}/{self.total_steps} {logs.units / max(logs.seconds, 1e-9):.0f} "
            f"{logs.unit}/s eta {self.eta(logs.step):.0f}s {losses}")
    cells = max(width - len(text) - 4, 10)
    filled = int(round(done * cells))
    line = f"[{'#' * filled}{'.' * (cells - filled)}] {text}"[:width - 1]
    self.stream.write("\r\x1b[K" + line)
    self.stream.flush()
    self._bar_shown = True

  def _clear_bar(self):
    if self._bar_shown:
      self.stream.write("\r\x1b[K")
      self.stream.flush()
      self._bar_shown = False

  def on_eval(self, step, metrics, is_best):
    self._clear_bar()
    rows = "\n".join(f"  {k:<28s} {v:8.2f}" for k, v in sorted(metrics.items()))
    self.write("evaluation at step %d%s:\n%s", step, "  (best so far)" if is_best else "", rows)


class SkippedSteps(Callback):
  """Logs skipped non-finite steps (their updates were not applied): the first, then each time
  the run's count passes a multiple of `every`, naming the first skip of that loop. Counts
  apart, in `overflows`, the fp16 steps skipped for a loss-scale overflow (the scale's normal
  working, not a non-finite step)."""

  def __init__(self, trainer, allowed, every=100, write=logging.warning):
    self.trainer = trainer
    self.allowed = allowed
    self.every = every
    self.write = write
    self.overflows = 0

  def on_loop_end(self, logs):
    self.overflows += logs.overflow_steps
    if not logs.nonfinite_steps:
      return
    total = int(self.trainer.nonfinite_steps.numpy())
    before = total - logs.nonfinite_steps
    if before == 0 or total // self.every > before // self.every:
      what, step = logs.first_nonfinite
      self.write("Skipped %d non-finite step(s) (NaN/Inf loss or gradient; not applied) up to "
                 "step %d, the first in %s at step %d; %d skipped in all, "
                 "--skip_nonfinite_steps=%d allowed.", logs.nonfinite_steps, logs.step, what,
                 step, total, self.allowed)
