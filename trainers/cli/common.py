"""What every binary shares: flag parsing and the one-line error contract.

A user's mistake (a bad flag, a malformed file, an impossible option) ends the program with
one line on stderr, `PROGRAM: error: MESSAGE`, and exit status 1: never a traceback.
SIGINT (Ctrl-C) and SIGTERM end it anywhere with one such line, saying what was written and
what a rerun does, and exit status 128 + the signal's number (130, 143); mtl-train's training
loop instead checkpoints and exits 0 (trainers.run).
"""

import contextlib
import logging as std_logging
import os
import signal
import sys
import textwrap

from absl import app, flags
from absl import logging as absl_logging

from mtlcore.errors import Interrupted, MtlError


def _fail(program, message):
  print(f"{program}: error: {message}", file=sys.stderr)
  sys.exit(1)


def start_tensorflow():
  """Imports TensorFlow, after the flags were checked, with its INFO lines off and its
  warnings kept: C++ INFO (XLA service, compiled clusters) unless TF_CPP_MIN_LOG_LEVEL says
  otherwise, and the INFO records its Python code logs through absl (the checkpoint saver's
  'Sharding callback duration' at every save, SavedModel's renamed inputs)."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.get_logger().setLevel("WARNING")
  handler = absl_logging.get_absl_handler()
  if not any(isinstance(f, _TensorFlowInfo) for f in handler.filters):
    handler.addFilter(_TensorFlowInfo(os.path.dirname(tf.__file__)))
  return tf


class _TensorFlowInfo(std_logging.Filter):
  """Drops the records below WARNING that come from TensorFlow's own files."""

  def __init__(self, directory):
    super().__init__()
    self.directory = os.path.realpath(directory) + os.sep

  def filter(self, record):
    return record.levelno >= std_logging.WARNING or not os.path.realpath(
        record.pathname).startswith(self.directory)


def refuse_flags(program, reads):
  """ConfigError for the first run flag (trainers.cli.flags) given on the command line that
  `program` does not read: nothing a user types is silently ignored."""
  from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=g-import-not-at-top
  given = [f.name for f in flags.FLAGS.get_flags_for_module(run_flags.__name__)
           if f.present and f.name not in reads]
  if given:
    raise MtlError(f"--{given[0]} does not apply to {program}, which reads "
                   f"{', '.join('--' + r for r in reads)} of mtl-train's flags.")


HELP_FLAGS = ("--help", "-help", "-h", "-?", "--helpshort", "-helpshort")


def help_text(program, usage, groups, defaults=None):
  """--help's text: the usage, then each group's flags with their defaults and help.

  Args:
    program: the binary's name.
    usage: its docstring, whose first two paragraphs (what it is, how it is called) are shown.
    groups: (title, flag names) or (title, flag names, {name: default shown}) tuples.
    defaults: {name: default shown} for flags defined without one (the task set's).
  """
  lines = ["\n\n".join(usage.strip().split("\n\n")[:2]) if usage else program, ""]
  for title, names, *shown in groups:
    shown = {**(defaults or {}), **(shown[0] if shown else {})}
    lines.append(f"{title}:")
    for name in names:
      flag = flags.FLAGS[name]
      if flag.default is not None:
        default = f" (default: {flag.default_as_str})"
      elif name in shown:
        value = shown[name]
        value = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
        default = f" (default: {value!r})" if isinstance(value, str) else f" (default: {value})"
      else:
        default = ""
      lines.append(f"  --{name}{default}")
      lines += textwrap.wrap(flag.help, width=96, initial_indent="      ",
                             subsequent_indent="      ")
    lines.append("")
  lines.append("--helpfull lists absl's and TensorFlow's flags as well.")
  return "\n".join(lines)


def run(program, main, *, usage="", help_groups=(), prepare=None, defaults=None):
  """Runs `main()` (no arguments) under absl with the one-line error contract.

  Args:
    program, usage: as help_text's.
    help_groups: help_text's groups, or a function returning them (called after `prepare`).
    prepare: `argv -> None`, called before the command line is parsed (it may define flags,
      e.g. the task set's options); a MtlError it raises is the one-line error.
    defaults: a function returning help_text's `defaults`, called after `prepare`.
  --help and --helpshort print the help and exit 0.
  """

  def parse(argv):
    try:
      if prepare is not None:
        prepare(argv)
    except MtlError as e:
      _fail(program, e)
    if any(arg in HELP_FLAGS for arg in argv[1:]):
      groups = help_groups() if callable(help_groups) else help_groups
      try:
        print(help_text(program, usage, groups, defaults() if defaults else None), flush=True)
      except BrokenPipeError:  # e.g. | head
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
      sys.exit(0)
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
