"""Errors that mtlcore raises for bad configuration or bad input.

Every error here carries one sentence a user can act on. The binaries catch `MtlError`, print
its message on one line and exit non-zero; anything else is a bug in mtlcore.
"""


class MtlError(Exception):
  """Base class of the errors a user can cause and fix."""


class ConfigError(MtlError, ValueError):
  """A size, name, flag or combination of options is invalid."""


class DataError(MtlError, ValueError):
  """An input file is malformed; the message names the file and line."""

  def __init__(self, path, line, message):
    self.path = str(path)
    self.line = line
    where = f"{self.path}:{line}" if line else self.path
    super().__init__(f"{where}: {message}")


class NonFiniteError(MtlError, FloatingPointError):
  """Training produced a NaN or Inf loss or gradient."""


def traced_control_flow(error, where):
  """The ConfigError for a tf.errors.OperatorNotAllowedInGraphError raised while `where` (e.g.
  "The training step") was traced: a user's loss, metric, head or trunk used a tensor as a
  Python bool or iterated over it. mtlcore traces without autograph (a tiny default run of the
  flagship took 21.6 s instead of 27.8 s: docs/guide.md), so such code must use TensorFlow's
  control flow."""
  first = str(error).strip().split(". ")[0].rstrip(".")
  return ConfigError(f"{where}: {first}; mtlcore traces without autograph, so a loss, metric, "
                     f"head or trunk must branch and loop on tensors with tf.cond, tf.where or "
                     f"tf.while_loop.")


def require_positive(what, value):
  """Raises ConfigError unless `value` is a positive integer.

  Args:
    what: a name for the value as the user knows it, e.g. "Linear output_size".
    value: the value to check.
  Returns:
    `value`, as an int.
  """
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f"{what} must be a positive integer, got {value!r}.")
  return value


def require_probability(what, value):
  """Raises ConfigError unless 0 <= value < 1."""
  if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
    raise ConfigError(f"{what} must be in [0, 1), got {value!r}.")
  return float(value)


class StorageError(MtlError, OSError):
  """A write failed (full disk, file-size limit, unwritable file); nothing half-written was
  left in the place of good data."""


class Interrupted(KeyboardInterrupt):
  """SIGINT or SIGTERM outside the part of a run that turns them into a checkpoint and a clean
  stop; `state` says what was written and what a rerun does. A KeyboardInterrupt, so that no
  `except Exception` swallows it."""

  def __init__(self, signal_name, exit_code, state=None):
    super().__init__(signal_name)
    self.signal_name = signal_name
    self.exit_code = exit_code
    self.state = state
