"""TaskSet: the plugin interface that says what a run trains, and the registry of task sets.

A task set offers named tasks and builds, for any subset of them, a MultiTaskModel with one
head per task, the Task objects (loss, in-step metrics, units), the training streams (one per
task for alternating training, one carrying every chosen task's labels for joint training),
and, where it has held-out data, an evaluation and an export. The engine
(`mtlcore.trainers`) knows nothing else about it.

The builder calls, in this order:
  1. `load_data(data_dir)`: read and check every input before anything is written;
  2. `build_model(tasks, seed=, assets_dir=, data=)`: the model for exactly these tasks. It may
     keep files (e.g. vocabularies) in `assets_dir`, a directory of the model directory, and
     must reuse them when they exist (a resumed run, evaluation, export); it may keep what the
     calls below need (it is called once per TaskSet instance);
  3. `make_tasks(model, tasks)`, then `joint_dataset` or `task_dataset` for the mode;
  4. `evaluate(model, data, tasks, split)` during and after training, and `export(...)`.
     By default the engine evaluates (mtlcore.evaluation): the task set gives the split as a
     finite data set (`eval_dataset`), and each task's own metrics are summed over its
     batches; a task set may override `evaluate` instead.

A task set is found by name: one installed as an entry point of the group `mtlcore.task_sets`
(mtlcore.options.Declaration: its options and its factory, the built-ins among them), one
registered with `register(name, factory)`, or `package.module:Name` for any importable
factory. A factory takes the task set's options (a dict, e.g. {"hidden_size": 64}) and
returns a TaskSet; it raises ConfigError for an option it does not know. A registered factory
must be importable (`import_path`): the run records where, so that mtl-eval, mtl-tag and a
resumed run in another process find it; a lambda or a function defined inside another is
refused at registration. This module imports no TensorFlow.
"""

import abc
import dataclasses
import functools
import importlib.metadata
import os
import sys
from collections.abc import Callable, Mapping

from mtlcore import options as options_lib
from mtlcore.errors import ConfigError

ENTRY_POINTS = "mtlcore.task_sets"


@dataclasses.dataclass(frozen=True)
class Stream:
  """An endless stream of (features, labels) batches that can begin at any batch.

  Attributes:
    make_dataset: `start -> tf.data.Dataset` beginning with batch number `start` (counted from
      the stream's first batch, across epochs). The trainers keep the number of batches
      consumed and rebuild the stream from it on resume (mtlcore.batching builds such
      plans); a function returning `dataset.skip(start)` is correct too, only slower to resume.
    steps_per_epoch: batches in one pass over the stream's data.
  """
  make_dataset: Callable
  steps_per_epoch: int


class TaskSet(abc.ABC):
  """What a run trains. Subclasses set the class attributes and implement the methods.

  Attributes:
    task_names: every task it offers, in the default order.
    defaults: run settings it wants unless the user sets them (RunConfig field names, e.g.
      {"learning_rate": 2e-3, "epochs": 24.0}).
    selection: evaluation metric keys in order of preference; the first whose task is trained
      selects the best checkpoint (e.g. ("entities/f1", "kind/accuracy")).
    splits: the held-out splits `evaluate` accepts; the first selects the best checkpoint.
  """

  task_names: tuple = ()
  option_schema: tuple = ()  # mtlcore.options.Option of every option it takes.
  defaults: Mapping = {}
  selection: tuple = ()
  splits: tuple = ()
  # Options that choose held-out data only (e.g. a test file): mtl-eval may set them to score
  # other data of the same form; every other option is fixed by the trained model.
  evaluation_options: tuple = ()
  eval_batch_size: int = 256  # Examples per batch of `eval_dataset`.

  def load_data(self, data_dir):
    """Reads and checks the data (errors name file and line); returns it, or None."""
    del data_dir
    return None

  @abc.abstractmethod
  def build_model(self, tasks, *, seed, assets_dir, data=None):
    """A mtlcore.model.MultiTaskModel with one head per task in `tasks`."""

  @abc.abstractmethod
  def make_tasks(self, model, tasks):
    """One mtlcore.tasks.Task per name in `tasks`, in that order."""

  @abc.abstractmethod
  def joint_dataset(self, data, tasks, *, batch_size, seed):
    """A Stream whose labels carry every task in `tasks`."""

  @abc.abstractmethod
  def task_dataset(self, data, task, *, batch_size, seed):
    """A Stream of batches labelled for `task` (the task's own corpus)."""

  def options(self):
    """Every option with the value in force (defaults included), JSON-able: stored with the
    run, shown in TensorBoard's HParams, compared on resume."""
    return {}

  def eval_dataset(self, data, tasks, split, *, batch_size):
    """A finite tf.data.Dataset of (features, {task: labels}) batches of `split`, or None
    (then `evaluate` must be overridden). Labels follow the tasks' missing-label
    conventions; the last batch may be smaller."""
    del data, tasks, split, batch_size
    return None

  def evaluate(self, model, data, tasks, split):
    """{"TASK/METRIC": value} of `tasks` on `split`; only called if `splits` is not empty.

    This default: the engine's evaluation (mtlcore.evaluation.Evaluator) of the tasks'
    loss and metrics over `eval_dataset`, built once per model and tasks."""
    tasks = tuple(tasks)
    dataset = self.eval_dataset(data, tasks, split, batch_size=self.eval_batch_size)
    if dataset is None:
      raise ConfigError(f"{type(self).__name__} has held-out splits {list(self.splits)} but "
                        f"neither an eval_dataset nor an evaluate.")
    from mtlcore import evaluation  # pylint: disable=import-outside-toplevel  # TensorFlow.
    evaluators = self.__dict__.setdefault("_evaluators", {})
    key = (id(model), tasks)
    if key not in evaluators:
      evaluators[key] = (model, evaluation.Evaluator(model, self.make_tasks(model, tasks)))
    return evaluators[key][1](dataset)

  def is_detail_metric(self, key):
    """Whether `evaluate`'s metric `key` is a detail (e.g. a score per class): listed after
    the headline metrics and left out of TensorBoard's HParams view. This default: a gate's
    mean weights (mtlcore.evaluation's "gates/...")."""
    return key.startswith("gates/")

  def export(self, model, tasks, export_dir):
    """Writes a SavedModel that serves `tasks` into export_dir, a new empty directory that
    the engine then moves into place (so a half-written export never replaces a good one);
    mtlcore.export's functions with atomically=False write one."""
    raise ConfigError(f"{type(self).__name__} has no export; drop --export_dir.")

  def export_problem(self, tasks):
    """Why `export` cannot serve a run of `tasks` (checked before training), or None."""
    del tasks
    return None if type(self).export is not TaskSet.export else "this task set has no export"

  def write_predictions(self, model, data, tasks, split, path):
    """Writes the model's predictions on `split` into directory `path` (mtl-eval --output: a
    new empty directory, moved into place when complete)."""
    raise ConfigError(f"{type(self).__name__} cannot write predictions; drop --output.")

  def selection_keys(self, tasks):
    """The `selection` keys whose task is in `tasks`, in order of preference."""
    return [k for k in self.selection if k.split("/", 1)[0] in tasks]

  def selection_metric(self, tasks):
    """The key of `evaluate`'s result that selects the best checkpoint, or None."""
    return next(iter(self.selection_keys(tasks)), None)

  def check_tasks(self, tasks):
    """`tasks` as a tuple (default: all), or ConfigError naming what is wrong."""
    tasks = tuple(tasks) if tasks else tuple(self.task_names)
    unknown = [t for t in tasks if t not in self.task_names]
    if unknown:
      raise ConfigError(f"unknown task(s) {unknown}; this task set's tasks are "
                        f"{list(self.task_names)}.")
    if len(set(tasks)) != len(tasks):
      raise ConfigError(f"a task is listed twice: {list(tasks)}.")
    return tasks


_REGISTRY: dict[str, Callable] = {}
_IMPORT_PATHS: dict[str, str] = {}


@functools.cache
def _entry_points():
  """{name: EntryPoint} of the installed task sets."""
  return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINTS)}


@functools.cache
def _installed(name):
  try:
    declaration = _entry_points()[name].load()
  except Exception as e:  # pylint: disable=broad-except  # A plugin's import can raise anything.
    raise ConfigError(f"--task_set={name}: its entry point {_entry_points()[name].value} does "
                      f"not load ({type(e).__name__}: {e}).") from None
  if not isinstance(declaration, options_lib.Declaration):
    raise ConfigError(f"--task_set={name}: the entry point {_entry_points()[name].value} is a "
                      f"{type(declaration).__name__}, not a mtlcore.options.Declaration.")
  return declaration


def installed_names():
  """The task sets installed as entry points (read without importing them)."""
  return sorted(_entry_points())


def declaration(name):
  """The Declaration of task set `name` (options, factory, run defaults), or None.

  Installed task sets are read without importing their factory; a registered factory or a
  `package.module:Name` is imported, and its `option_schema` and `defaults` read."""
  if name in _REGISTRY or (":" in name and name not in _entry_points()):
    factory = _REGISTRY.get(name) or options_lib.import_object(name, flag="--task_set")
    if isinstance(factory, options_lib.Declaration):
      return factory
    return options_lib.Declaration(
        factory=_IMPORT_PATHS.get(name, name), options=tuple(getattr(factory, "option_schema", ())),
        run_defaults=dict(getattr(factory, "defaults", {}) or {}))
  if name in _entry_points():
    return _installed(name)
  return None


def default_name():
  """The installed task set whose declaration says it is the default, or ConfigError."""
  own = [n for n, ep in _entry_points().items()
         if ep.dist is not None and ep.dist.name == "mtlcore"]
  defaults = [n for n in own if _installed(n).default]
  if len(defaults) != 1:
    raise ConfigError(f"--task_set is required: one of {names()} or package.module:Name.")
  return defaults[0]


def _importable_path(factory):
  """`package.module:Name` that imports `factory` in another process, or ConfigError. A
  factory of the script being run (`__main__`) is named by the script's file."""
  module = getattr(factory, "__module__", None)
  qualname = getattr(factory, "__qualname__", "")
  if module == "__main__":
    main = sys.modules["__main__"]
    spec = getattr(main, "__spec__", None)
    stem = os.path.splitext(os.path.basename(getattr(main, "__file__", "") or ""))[0]
    module = spec.name if spec is not None and spec.name != "__main__" else stem
  if not module or not module.replace(".", "_").isidentifier() or "<" in qualname \
      or not qualname:
    raise ConfigError(f"register: the task set factory {factory!r} cannot be imported by "
                      f"name (a lambda, a function defined inside another, or a script "
                      f"without a file); define it at the top level of a module.")
  return f"{module}:{qualname}"


def register(name, factory):
  """Makes `factory(options) -> TaskSet` available as task set `name`; `factory` must be
  defined at the top level of a module (see import_path)."""
  if not name or ":" in name:
    raise ConfigError(f"A task set name must be non-empty and hold no ':', got {name!r}.")
  path = _importable_path(factory)
  _REGISTRY[name] = factory
  _IMPORT_PATHS[name] = path


def import_path(name):
  """How another process imports task set `name`: `package.module:Name` for a registered
  one (its module must be on that process' PYTHONPATH), the name itself for a
  package.module:Name, None for a built-in."""
  if name in _REGISTRY:
    return _IMPORT_PATHS[name]
  return name if ":" in name else None


def names():
  """The task sets known by name."""
  return sorted({*_entry_points(), *_REGISTRY})


def resolve(name, options=None, *, recorded_path=None):
  """The TaskSet called `name` (a registered name or package.module:factory) with options.

  recorded_path: where a run recorded the factory of a registered `name` (import_path), for
  a process in which `name` is not registered.
  """
  if name in _REGISTRY:
    factory = _REGISTRY[name]
  elif name in _entry_points():
    factory = _installed(name).load_factory()
  elif ":" in name:
    factory = options_lib.import_object(name, flag="--task_set")
    if isinstance(factory, options_lib.Declaration):
      factory = factory.load_factory()
  elif recorded_path:
    try:
      factory = options_lib.import_object(recorded_path, flag="--task_set")
    except ConfigError as e:
      raise ConfigError(f"{e} The run registered --task_set={name} from {recorded_path}: put "
                        f"the directory of {recorded_path.partition(':')[0]} on PYTHONPATH."
                        ) from None
  else:
    raise ConfigError(f"--task_set={name} is neither an installed or registered task set "
                      f"{names()} nor package.module:Name.")
  task_set = factory(dict(options or {}))
  if not isinstance(task_set, TaskSet):
    raise ConfigError(f"--task_set={name}: the factory returned {type(task_set).__name__}, "
                      f"not a mtlcore.task_set.TaskSet.")
  return task_set
