"""What every binary shares: flag parsing and the one-line error contract.

A user's mistake (a bad flag, a malformed file, an impossible option) ends the program with
one line on stderr, `PROGRAM: error: MESSAGE`, and exit status 1: never a traceback.
"""

import os
import sys

from absl import app, flags

from mtlcore.errors import MtlError


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

  app.run(wrapped, flags_parser=parse)
