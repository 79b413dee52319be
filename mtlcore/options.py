"""A task set's declaration: its options and where its factory is, importable without TensorFlow.

A task set is installed as an entry point of the group `mtlcore.task_sets` (pyproject.toml:
`[project.entry-points."mtlcore.task_sets"] NAME = "package.module:DECLARATION"`) whose
object is a `Declaration`. Loading it imports only the declaring module, so the binaries can
make a flag of every option (`--NAME`), list them under `--helpshort` and check their values
before TensorFlow starts; the factory (`package.module:Name`, a string) is imported only to
build the task set. A library user passes the same names in the options dict of
`mtlcore.task_set.resolve`.

A factory given as `--task_set=package.module:Name` may carry its options as the attribute
`option_schema` (a tuple of Option); they are read after importing it.
"""

import dataclasses
import importlib
from collections.abc import Mapping

from mtlcore.errors import ConfigError

# Option kinds -> what a value of that kind is (as the binaries parse the flag).
KINDS = ("string", "integer", "float", "boolean", "list", "integers", "enum")


@dataclasses.dataclass(frozen=True)
class Option:
  """One option of a task set.

  Attributes:
    name: the options-dict key and the flag's name (`--name`).
    kind: one of KINDS: string, integer, float, boolean; list (comma-separated strings);
      integers (comma-separated integers); enum (one of `choices`).
    default: the value the task set uses when the option is not given (shown by --help);
      None when there is none.
    help: one sentence for --help.
    choices: the values of an enum.
  """
  name: str
  kind: str
  default: object = None
  help: str = ""
  choices: tuple = ()

  def __post_init__(self):
    if not self.name.isidentifier():
      raise ValueError(f"Option name {self.name!r} is not an identifier.")
    if self.kind not in KINDS:
      raise ValueError(f"Option {self.name}: kind must be one of {KINDS}, got {self.kind!r}.")
    if (self.kind == "enum") != bool(self.choices):
      raise ValueError(f"Option {self.name}: an enum, and only an enum, has choices.")


@dataclasses.dataclass(frozen=True)
class Declaration:
  """What an entry point of `mtlcore.task_sets` names.

  Attributes:
    factory: "package.module:Name" of `Name(options: dict) -> TaskSet`.
    summary: one line for the list of task sets.
    options: the options, in the order --help lists them.
    run_defaults: the run settings it uses unless the user sets them (RunConfig field names,
      e.g. {"learning_rate": 2e-3}); the TaskSet's `defaults`.
    default: this is the task set mtl-train trains when --task_set is not given (one installed
      declaration may say so).
  """
  factory: str
  summary: str = ""
  options: tuple = ()
  run_defaults: Mapping = dataclasses.field(default_factory=dict)
  default: bool = False

  def __post_init__(self):
    module, sep, name = self.factory.partition(":")
    if not sep or not module or not name:
      raise ValueError(f"Declaration.factory must be 'package.module:Name', got "
                       f"{self.factory!r}.")
    names = [o.name for o in self.options]
    if len(set(names)) != len(names):
      raise ValueError(f"Declaration of {self.factory}: an option is declared twice.")

  def option(self, name):
    return next(o for o in self.options if o.name == name)

  def option_defaults(self):
    """{name: default} of the options that have one."""
    return {o.name: o.default for o in self.options if o.default is not None}

  def load_factory(self):
    """The factory, imported (this may start TensorFlow)."""
    return import_object(self.factory, flag="--task_set")


def import_object(path, *, flag):
  """The object `package.module:Name` names, or ConfigError naming `flag`."""
  module_name, _, attribute = path.partition(":")
  try:
    module = importlib.import_module(module_name)
  except ImportError as e:
    raise ConfigError(f"{flag}={path}: cannot import {module_name} ({e}).") from None
  try:
    return getattr(module, attribute)
  except AttributeError:
    raise ConfigError(f"{flag}={path}: {module_name} has no {attribute!r}.") from None


def replace_defaults(options, **defaults):
  """`options` with the defaults of the named ones replaced (a task set that is another's
  instance with other defaults)."""
  unknown = set(defaults) - {o.name for o in options}
  if unknown:
    raise ValueError(f"replace_defaults: no option {sorted(unknown)}.")
  return tuple(dataclasses.replace(o, default=defaults[o.name]) if o.name in defaults else o
               for o in options)


def reject_unknown(task_set_name, given, options):
  """ConfigError naming the keys of `given` that are not among `options` (Option or names),
  as the flags a user gave."""
  known = [o if isinstance(o, str) else o.name for o in options]
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise ConfigError(f"{', '.join('--' + u for u in unknown)} does not apply to "
                      f"--task_set={task_set_name} (it takes {sorted(known) or 'no options'}).")
