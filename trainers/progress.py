"""Terminal progress: one absl log line per log interval, and a table after each evaluation.

Nothing is printed per step: the line is formatted from the logs of a finished loop.
"""

import time

from absl import logging

from trainers.loop import Callback


class ProgressLogger(Callback):
  """Logs step / total, elapsed, ETA, per-task losses and tokens/s every `log_every` steps."""

  def __init__(self, total_steps, log_every):
    self.total_steps = total_steps
    self.log_every = log_every
    self._start = None
    self._start_step = 0
    self._tokens = 0.0
    self._seconds = 0.0

  def on_loop_begin(self, step):
    if self._start is None:
      self._start, self._start_step = time.time(), step

  def on_loop_end(self, step, logs):
    self._tokens += logs.get("tokens_in_loop", 0.0)
    self._seconds += logs["loop_seconds"]
    previous = step - logs["steps_in_loop"]
    if step // self.log_every == previous // self.log_every and step < self.total_steps:
      return
    elapsed = time.time() - self._start
    eta = elapsed / max(step - self._start_step, 1) * (self.total_steps - step)
    losses = "  ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if k.endswith("/loss"))
    rate = self._tokens / self._seconds if self._seconds else 0.0
    logging.info("step %d/%d  elapsed %.0fs  eta %.0fs  %s  %.1f ms/step  %.0f tokens/s", step,
                 self.total_steps, elapsed, eta, losses, 1000 * logs["seconds_per_step"], rate)
    self._tokens = self._seconds = 0.0

  def on_eval(self, step, metrics, is_best):
    rows = "\n".join(f"  {k:<28s} {v:8.2f}" for k, v in sorted(metrics.items()))
    logging.info("evaluation at step %d%s:\n%s", step, "  (best so far)" if is_best else "",
                 rows)
