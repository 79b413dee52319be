"""The task set's options as flags, made at start-up from the task set's declaration.

The binaries learn which options a task set takes from its mtlcore.options.Declaration: before
the command line is parsed, `define(name)` makes one flag `--OPTION` per declared option (the
flags of the previous task set, in this process, are removed first), so that `--helpshort`
lists them, a misspelt one is refused, and a value of the wrong type exits before TensorFlow
starts. Only the options given are passed to the task set, which applies its own defaults.
An installed task set is declared by its entry point, without importing its factory; a
`package.module:Name` is imported to read its `option_schema`.
"""

import json

from absl import flags

from mtlcore import task_set as task_set_lib
from mtlcore.errors import ConfigError

FLAGS = flags.FLAGS

_defined = {"name": None, "declaration": None, "flags": ()}

_DEFINE = {"string": flags.DEFINE_string, "integer": flags.DEFINE_integer,
           "float": flags.DEFINE_float, "boolean": flags.DEFINE_boolean,
           "list": flags.DEFINE_list, "integers": flags.DEFINE_list}


def flag_value(argv, name):
  """The value of --name in argv as absl would read it (`--name=V`, `-name=V`, `--name V`;
  the last one wins), or None."""
  value = None
  for i, arg in enumerate(argv):
    if arg == "--":
      break
    for prefix in (f"--{name}", f"-{name}"):
      if arg.startswith(prefix + "="):
        value = arg[len(prefix) + 1:]
      elif arg == prefix and i + 1 < len(argv):
        value = argv[i + 1]
  return value


def clear():
  """Removes the option flags `define` made (a process may run several binaries)."""
  for flag_name in _defined["flags"]:
    delattr(FLAGS, flag_name)
  _defined.update(name=None, declaration=None, flags=())


def define(name):
  """Defines the flags of task set `name`'s options; returns its Declaration (ConfigError
  for a task set that is not found or declares an option that is a flag already)."""
  clear()
  declaration = task_set_lib.declaration(name)
  if declaration is None:
    raise ConfigError(f"--task_set={name} is neither an installed or registered task set "
                      f"{task_set_lib.names()} nor package.module:Name.")
  defined = []
  for option in declaration.options:
    if option.name in FLAGS:
      raise ConfigError(f"--task_set={name} declares the option {option.name!r}, which is a "
                        f"flag of the binaries; the task set must rename it.")
    if option.kind == "enum":
      flags.DEFINE_enum(option.name, None, list(option.choices), option.help)
    else:
      _DEFINE[option.kind](option.name, None, option.help)
    defined.append(option.name)
  _defined.update(name=name, declaration=declaration, flags=tuple(defined))
  return declaration


def declaration():
  """The Declaration `define` last read, or None."""
  return _defined["declaration"]


def defined_name():
  """The task set whose options `define` last defined, or None."""
  return _defined["name"]


def _value(text):
  try:
    return json.loads(text)
  except ValueError:
    return text


def given(extra_items=()):
  """{option: value} of the option flags given on the command line, after `extra_items`
  (--task_set_options' KEY=VALUE strings, values read as JSON where they parse)."""
  options = {}
  for item in extra_items:
    key, sep, value = item.partition("=")
    if not sep or not key:
      raise ConfigError(f"--task_set_options takes KEY=VALUE items, got {item!r}.")
    options[key] = _value(value)
  for name in _defined["flags"]:
    if not FLAGS[name].present:
      continue
    value = FLAGS[name].value
    if _defined["declaration"].option(name).kind == "integers":
      try:
        value = [int(v) for v in value]
      except ValueError:
        raise ConfigError(f"--{name} must be integers, got {list(value)}.") from None
    options[name] = value
  return options


def help_group():
  """(title, flag names, {name: default shown}) of the options --help lists, or None."""
  declaration_ = _defined["declaration"]
  if declaration_ is None:
    return None
  name = _defined["name"]
  title = f"Options of --task_set={name}"
  if declaration_.summary:
    title += f" ({declaration_.summary})"
  if name not in task_set_lib.installed_names():
    title += (f"; read by importing {name.partition(':')[0]}: an entry point of group "
              f"{task_set_lib.ENTRY_POINTS} would list them without importing it")
  return title, _defined["flags"], declaration_.option_defaults()
