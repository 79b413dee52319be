"""What every binary shares: flag parsing and the one-line error contract.

A user's mistake (a bad flag, a malformed file, an impossible option) ends the program with
one line on stderr, `PROGRAM: error: MESSAGE`, and exit status 1: never a traceback.
SIGINT (Ctrl-C) and SIGTERM end it anywhere with one such line, saying what was written and
what a rerun does, and exit status 128 + the signal's number (130, 143); mtl-train's training
loop instead checkpoints and exits 0 (trainers.run).
"""

import contextlib
import os
import signal
import sys

from absl import app, flags

from mtlcore.errors import Interrupted, MtlError


def _fail(program, message):
  print(f"{program}: error: {message}", file=sys.stderr)
  sys.exit(1)


def refuse_flags(program, reads):
  """ConfigError for the first run flag (trainers.cli.flags) given on the command line that
  `program` does not read: nothing a user types is silently ignored."""
  from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=g-import-not-at-top
  given = [f.name for f in flags.FLAGS.get_flags_for_module(run_flags.__name__)
           if f.present and f.name not in reads]
  if given:
    raise MtlError(f"--{given[0]} does not apply to {program}, which reads "
                   f"{', '.join('--' + r for r in reads)} of mtl-train's flags.")


def run(program, main):
  """Runs `main()` (no arguments) under absl with the one-line error contract."""

  def parse(argv):
    try:
      rest = flags.FLAGS(argv)
    except flags.Error as e:
      _fail(program, f"{e}. Run with --helpshort for the list of flags.")
    if len(rest) > 1:
      _fail(program, f"unexpected arguments {rest[1:]}; every option is a --flag.")
    return rest

  def wrapped(argv):
    del argv
    try:
      main()
    except MtlError as e:
      if getattr(e, "exit_now", False):  # A thread is blocked in TensorFlow: do not wait.
        print(f"{program}: error: {e}", file=sys.stderr, flush=True)
        os._exit(1)
      _fail(program, e)
    except Interrupted as e:
      state = f" {e.state}" if e.state else "; no file it was writing is left half-written"
      print(f"{program}: error: interrupted by {e.signal_name}{state}.", file=sys.stderr,
            flush=True)
      sys.exit(e.exit_code)

  with _interruptible():
    app.run(wrapped, flags_parser=parse)


@contextlib.contextmanager
def _interruptible():
  """SIGINT and SIGTERM raise Interrupted (the previous handlers come back at the end)."""

  def handle(signum, frame):
    del frame
    raise Interrupted(signal.Signals(signum).name, 128 + signum)

  previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
  try:
    yield
  finally:
    for signum, handler in previous.items():
      signal.signal(signum, handler)
