"""Terminal progress: one absl log line per log interval, and a table after each evaluation."""

from absl import logging


class ProgressLogger:
  """Formats the loop's logs for a person watching the terminal.

  Called by TrainingLoop between compiled loops, never inside them.
  """

  def __init__(self, total_steps):
    self.total_steps = total_steps

  def log_train(self, step, logs, elapsed, steps_done):
    eta = elapsed / max(steps_done, 1) * (self.total_steps - step)
    losses = "  ".join(f"{k}={v:.4f}" for k, v in sorted(logs.items()) if k.endswith("/loss"))
    rate = f"  {logs['tokens_per_sec']:.0f} tokens/s" if "tokens_per_sec" in logs else ""
    logging.info("step %d/%d  elapsed %.0fs  eta %.0fs  %s  %.1f ms/step%s", step,
                 self.total_steps, elapsed, eta, losses, 1000 * logs["seconds_per_step"], rate)

  def log_eval(self, step, metrics, is_best):
    rows = "\n".join(f"  {k:<28s} {v:8.2f}" for k, v in sorted(metrics.items()))
    logging.info("evaluation at step %d%s:\n%s", step, "  (best so far)" if is_best else "", rows)
