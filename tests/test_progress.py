"""The progress line's ETA is the steady state's (the first loop of a process compiles and is
left out), and a terminal gets a bar refreshed in place between log lines; a pipe gets only
the log lines."""

import io

from mtlcore.trainers.logs import LoopLogs, TaskLogs
from mtlcore.trainers.progress import ProgressLogger


class _Terminal(io.StringIO):

  def isatty(self):
    return True


def _logs(step, seconds):
  return LoopLogs(step=step, steps=10, examples=320.0, unit="tokens", units=3200.0,
                  nonfinite_steps=0, seconds=seconds,
                  tasks={"pos": TaskLogs(steps=10, units=3200.0, metrics={"loss": 0.5})})


def _run(stream, seconds):
  lines = []
  progress = ProgressLogger(100, 30, write=lambda fmt, *a: lines.append(fmt % a), stream=stream)
  for i, s in enumerate(seconds):
    progress.on_loop_begin(10 * i)
    progress.on_loop_end(_logs(10 * (i + 1), s))
  return progress, lines


def test_the_eta_leaves_out_the_first_loop_which_compiles():
  progress, lines = _run(io.StringIO(), [30.0, 1.0, 1.0])
  assert progress.eta(30) == (2.0 / 20) * 70  # Not (32 s / 30 steps) x 70.
  assert len(lines) == 1 and "step 30/100" in lines[0] and "eta 7s" in lines[0]


def test_a_terminal_gets_a_bar_refreshed_in_place_and_a_pipe_does_not():
  terminal = _Terminal()
  _run(terminal, [3.0, 1.0, 1.0, 1.0])
  shown = terminal.getvalue()
  bars = shown.split("\r\x1b[K")
  assert "\n" not in shown and len(bars) == 5  # Two bars, cleared before the log line, one more.
  assert bars[1].startswith("[") and "step 10/100" in bars[1] and "pos=0.500" in bars[1]
  assert "step 40/100" in bars[4]
  pipe = io.StringIO()
  _run(pipe, [3.0, 1.0, 1.0, 1.0])
  assert pipe.getvalue() == ""
