"""RunConfig: everything that defines a run, typed and validated once, in one place.

The binaries turn flags into a RunConfig; a library user builds one directly. Each field has
the name of the flag that sets it, and an error names that flag (`--batch_size must be ...`).
Fields left None take the task set's default (TaskSet.defaults), then the engine's.

On a resumed run the stored config (config.json in the model directory) is compared with the
new one field by field, and `RESUME_POLICY` decides: "refuse" (the checkpoint cannot be
continued under the new value: one line naming the flags) or "apply" (the new value is used
from the first step of the resumed run, and the log says so).
"""

import dataclasses
import math
import types
import typing
from collections.abc import Mapping

from mtlcore.choices import (GRADIENT_METHODS, PER_PARAMETER_STATE, PRECISIONS,
                             SAMPLED_GRADIENTS, SAMPLERS, TASK_GRADIENTS, WEIGHTINGS,
                             weighting_options)
from mtlcore.errors import ConfigError

# config.json's field holding where a registered task set's factory is imported from
# (mtlcore.task_set.import_path), for a process in which its name is not registered.
TASK_SET_IMPORT = "task_set_import"

MODES = ("joint", "alternate", "single")
STRATEGIES = ("default", "mirrored", "multi_worker")

# Values the engine uses when neither the user nor the task set sets one.
ENGINE_DEFAULTS = {"batch_size": 32, "learning_rate": 1e-3, "epochs": 10.0, "clip_norm": 0.0,
                   "eval_every": 0, "lr_decay_start": 1.0, "average_decay": 0.0}

# What a resumed run may change. Anything that shapes the checkpoint, the data order or the
# schedule's shape is refused; what only steers the run from now on is applied.
RESUME_POLICY = {
    "task_set": "refuse", "mode": "refuse", "tasks": "refuse", "options": "refuse",
    "seed": "refuse", "batch_size": "refuse", "task_weights": "refuse", "sampler": "refuse",
    "weighting": "refuse", "weighting_options": "refuse", "task_gradients": "refuse",
    "sampler_temperature": "refuse", "per_task_optimizer": "refuse",
    "init_from": "refuse",
    # The best score so far is kept in the checkpoint: it is comparable under its rule only.
    "select_by": "refuse", "select_references": "refuse", "best_per_task": "refuse",
    # The checkpoint holds the iterators or not: a resume keeps what it was written with.
    "checkpoint_iterators": "refuse",
    "freeze_trunk": "refuse", "precision": "refuse",
    # The replicas set the per-replica batch, so the data order: a run resumes under its own.
    "strategy": "refuse", "num_logical_cpus": "refuse",
    "average_decay": "refuse", "lr_decay_start": "refuse", "lr_final": "refuse",
    "worker_timeout": "apply", "learning_rate": "apply", "train_steps": "apply", "epochs": "apply", "clip_norm": "apply",
    "skip_nonfinite_steps": "apply", "xla": "apply", "deterministic": "apply",
    "steps_per_loop": "apply", "log_every": "apply", "eval_every": "apply",
    "checkpoint_every": "apply", "keep_checkpoints": "apply", "summaries": "apply",
    "trace_graph": "apply", "profile_steps": "apply", "data_dir": "apply",
    "export_dir": "apply", "overwrite": "apply", "model_dir": "apply",
}


def _positive_int(name, value):
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    raise ConfigError(f"--{name} must be positive, got {value!r}.")


def _in_range(name, value, low, high, *, high_open=False):
  ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
  if not ok or not low <= value <= high or (high_open and value == high):
    raise ConfigError(f"--{name} must be in [{low}, {high}{')' if high_open else ']'}, "
                      f"got {value!r}.")


@dataclasses.dataclass(frozen=True)
class RunConfig:
  """A run's settings. Field names are the flags of mtl-train.

  Attributes:
    task_set: a task set name, or package.module:function (see mtlcore.task_set).
    model_dir: where checkpoints, logs, config and metrics go (required to train).
    mode: "joint" (one batch, weighted losses, one optimizer), "alternate" (one task per step,
      chosen by a sampler, one optimizer per task) or "single" (one task, one optimizer).
    tasks: the tasks to train (default: all of the task set's); the model has only their heads.
    task_weights: one number per task: loss weights (joint) or sampling weights (alternate,
      the "weighted" sampler).
    sampler: alternate mode's task sampler (mtlcore.sampling.KINDS): uniform (default),
      proportional to each task's corpus, temperature, annealed, weighted, round_robin.
    sampler_temperature: T of the temperature sampler.
    weighting: joint mode's way of combining the task losses (mtlcore.weighting.METHODS):
      sum (default; static with --task_weights), a loss weighting (uncertainty, dwa,
      gradnorm, rlw, imtl_l, gls) or a gradient method (pcgrad, gradvac, cagrad, upgrad,
      dualproj, mgda, imtl_g, imtl, nash_mtl, aligned_mtl).
    weighting_options: "NAME=VALUE" strings, the weighting's hyper-parameters
      (mtlcore.choices.WEIGHTING_OPTIONS; their papers' defaults otherwise).
    task_gradients: where a gradient method takes each task's gradient: "parameters" (the
      trunk's shared variables, one backward pass through the trunk per task) or
      "representation" (the shared representation every head reads; one backward pass
      through the trunk in all; LibMTL's rep_grad, MGDA-UB's approximation for mgda).
    per_task_optimizer: alternate mode: one Adam per task (separate trunk moments per task),
      or one shared by all tasks (one set of trunk moments, one update count).
    init_from: a model directory whose trunk (and heads of the same task names and shapes)
      a new run starts from; its assets (e.g. vocabularies) are copied too.
    freeze_trunk: no step changes the trunk (with init_from: train new heads on a fixed
      trunk).
    precision: the model's compute type, "fp32", "bf16" or "fp16" (mtlcore.precision); the
      variables, losses and optimizer state stay float32; fp16 adds dynamic loss scaling.
    strategy: the tf.distribute strategy to train under (trainers.replicas): "default" (one
      device), "mirrored" (every local GPU, or the logical CPUs of num_logical_cpus) or
      "multi_worker" (MultiWorkerMirroredStrategy over the machines TF_CONFIG names).
    num_logical_cpus: split the CPU into this many logical devices (0: leave it whole), to
      run a strategy's replicas on one CPU.
    worker_timeout: multi_worker: seconds to wait for every worker to join, and for a peer
      inside a collective (trainers.workers); past it the worker exits with one line.
    options: the task set's own options (e.g. {"trunk": "conv"}).
    data_dir: where the task set reads its data (None: its default place).
    export_dir: export the best model here after training (a new or empty directory, or
      this run's earlier export; mtlcore.files).
    overwrite: the export may replace an earlier export of another run.
    batch_size: examples per batch.
    learning_rate: Adam's base learning rate.
    lr_decay_start, lr_final: the rate is constant for the first lr_decay_start of training,
      then falls linearly to lr_final x base at the last step (1: constant).
    average_decay: evaluate, keep and export a moving average of the weights (0: off).
    clip_norm: clip each step's gradients to this global norm (0: no clipping).
    train_steps, epochs: training length; train_steps wins; epochs are passes over the
      training data (alternate mode: this many passes per task).
    xla: compile each step with XLA.
    seed: seed of weights, data order, dropout and task sampling.
    deterministic: also enable TensorFlow op determinism (bitwise-reproducible runs).
    skip_nonfinite_steps: how many NaN/Inf steps may be skipped before training stops.
    steps_per_loop: steps per call into the compiled loop.
    log_every, eval_every, checkpoint_every: in steps (eval_every 0: only at the end).
    keep_checkpoints: recent training checkpoints kept.
    summaries, trace_graph, profile_steps: TensorBoard output; profile_steps is (A, B).
    select_by: which evaluation is best (trainers.selection): "" the task set's selection
      metric, "TASK/METRIC" that key, "delta_m" the mean relative gain over the tasks
      against select_references.
    select_references: delta_m's references: "KEY=VALUE" items, or model directories of
      finished runs (e.g. single-task ones) whose metrics.json holds the keys.
    best_per_task: also keep each task's best checkpoint by its own metric in best/TASK/.
    checkpoint_iterators: save each input stream's tf.data iterator in the checkpoint
      (Trainer.checkpoint_inputs) instead of resuming it by its position; for sources that
      are slow or unable to skip.
  """

  task_set: str
  model_dir: str | None = None
  mode: str = "joint"
  tasks: tuple = ()
  task_weights: tuple = ()
  sampler: str | None = None
  sampler_temperature: float = 2.0
  weighting: str = "sum"
  weighting_options: tuple = ()
  task_gradients: str = "parameters"
  per_task_optimizer: bool = True
  init_from: str | None = None
  freeze_trunk: bool = False
  precision: str = "fp32"
  strategy: str = "default"
  num_logical_cpus: int = 0
  worker_timeout: int = 600
  options: Mapping = dataclasses.field(default_factory=dict)
  data_dir: str | None = None
  export_dir: str | None = None
  overwrite: bool = False
  batch_size: int | None = None
  learning_rate: float | None = None
  lr_decay_start: float | None = None
  lr_final: float = 0.0
  average_decay: float | None = None
  clip_norm: float | None = None
  train_steps: int | None = None
  epochs: float | None = None
  xla: bool = True
  seed: int = 0
  deterministic: bool = False
  skip_nonfinite_steps: int = 0
  steps_per_loop: int = 50
  log_every: int = 200
  eval_every: int | None = None
  checkpoint_every: int = 1000
  keep_checkpoints: int = 3
  summaries: bool = True
  trace_graph: bool = False
  profile_steps: tuple | None = None
  select_by: str = ""
  select_references: tuple = ()
  best_per_task: bool = False
  checkpoint_iterators: bool = False

  def __post_init__(self):
    object.__setattr__(self, "tasks", tuple(self.tasks or ()))
    object.__setattr__(self, "select_references", tuple(self.select_references or ()))
    object.__setattr__(self, "weighting_options", tuple(self.weighting_options or ()))
    object.__setattr__(self, "task_weights", tuple(self.task_weights or ()))
    object.__setattr__(self, "options", dict(self.options or {}))
    if self.profile_steps is not None:
      object.__setattr__(self, "profile_steps", tuple(self.profile_steps))
    self._validate()

  def _validate(self):
    if not self.task_set:
      raise ConfigError("--task_set must name a task set.")
    if self.mode not in MODES:
      raise ConfigError(f"--mode must be one of {list(MODES)}, got {self.mode!r}.")
    if len(set(self.tasks)) != len(self.tasks):
      raise ConfigError(f"--tasks lists a task twice: {list(self.tasks)}.")
    if self.mode == "single" and len(self.tasks) != 1:
      raise ConfigError(f"--mode=single trains exactly one task; --tasks gave "
                        f"{list(self.tasks)}.")
    if self.task_weights:
      if self.mode == "single":
        raise ConfigError("--task_weights does not apply to --mode=single.")
      if not all(isinstance(w, (int, float)) and math.isfinite(w) and w >= 0
                 for w in self.task_weights) or not sum(self.task_weights) > 0:
        raise ConfigError(f"--task_weights must be non-negative numbers with a positive sum, "
                          f"got {list(self.task_weights)}.")
    if self.sampler is not None:
      if self.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {list(SAMPLERS)}, got {self.sampler!r}.")
      if self.mode != "alternate":
        raise ConfigError(f"--sampler applies to --mode=alternate, not --mode={self.mode}.")
      if self.task_weights and self.sampler != "weighted":
        raise ConfigError(f"--task_weights set the weighted sampler's weights; they conflict "
                          f"with --sampler={self.sampler}.")
    if self.weighting not in WEIGHTINGS:
      raise ConfigError(f"--weighting must be one of {list(WEIGHTINGS)}, got "
                        f"{self.weighting!r}.")
    if self.weighting != "sum":
      if self.mode != "joint":
        raise ConfigError(f"--weighting applies to --mode=joint, not --mode={self.mode}.")
      if self.task_weights and self.weighting != "static":
        raise ConfigError(f"--task_weights are static loss weights; they conflict with "
                          f"--weighting={self.weighting}.")
      if self.weighting == "static" and not self.task_weights:
        raise ConfigError("--weighting=static needs --task_weights.")
    try:
      weighting_options(self.weighting, self.weighting_options)
    except ValueError as e:
      raise ConfigError(str(e)) from None
    if self.task_gradients not in TASK_GRADIENTS:
      raise ConfigError(f"--task_gradients must be one of {list(TASK_GRADIENTS)}, got "
                        f"{self.task_gradients!r}.")
    if self.task_gradients == "representation":
      if self.weighting not in GRADIENT_METHODS:
        raise ConfigError(f"--task_gradients=representation applies to a gradient method "
                          f"(--weighting={'|'.join(GRADIENT_METHODS)}), not "
                          f"--weighting={self.weighting}.")
      if self.weighting in PER_PARAMETER_STATE:
        raise ConfigError(f"--weighting={self.weighting} keeps state per shared parameter; it "
                          f"takes no --task_gradients=representation.")
      if self.weighting in SAMPLED_GRADIENTS:
        raise ConfigError(f"--weighting={self.weighting} takes three samples of each task's "
                          f"gradient on the parameters; it takes no "
                          f"--task_gradients=representation.")
    if not self.per_task_optimizer and self.mode != "alternate":
      raise ConfigError(f"--noper_task_optimizer applies to --mode=alternate; --mode="
                        f"{self.mode} has one optimizer anyway.")
    if not (isinstance(self.sampler_temperature, (int, float))
            and math.isfinite(self.sampler_temperature) and self.sampler_temperature > 0):
      raise ConfigError(f"--sampler_temperature must be positive, got "
                        f"{self.sampler_temperature!r}.")
    for name in ("batch_size", "train_steps", "steps_per_loop", "log_every", "worker_timeout",
                 "checkpoint_every", "keep_checkpoints"):
      if getattr(self, name) is not None:
        _positive_int(name, getattr(self, name))
    for name in ("learning_rate", "epochs"):
      value = getattr(self, name)
      if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)
                                    and value > 0):
        raise ConfigError(f"--{name} must be positive, got {value!r}.")
    if self.lr_decay_start is not None:
      _in_range("lr_decay_start", self.lr_decay_start, 0, 1)
    _in_range("lr_final", self.lr_final, 0, 1)
    if self.average_decay is not None:
      _in_range("average_decay", self.average_decay, 0, 1, high_open=True)
    if self.clip_norm is not None and not (isinstance(self.clip_norm, (int, float))
                                           and self.clip_norm >= 0):
      raise ConfigError(f"--clip_norm must be positive (0: no clipping), got {self.clip_norm!r}.")
    if self.eval_every is not None and not (isinstance(self.eval_every, int)
                                            and self.eval_every >= 0):
      raise ConfigError(f"--eval_every must be 0 or positive, got {self.eval_every!r}.")
    if self.strategy not in STRATEGIES:
      raise ConfigError(f"--strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}.")
    if isinstance(self.num_logical_cpus, bool) or not isinstance(self.num_logical_cpus, int) \
        or self.num_logical_cpus < 0:
      raise ConfigError(f"--num_logical_cpus must be >= 0, got {self.num_logical_cpus!r}.")
    if self.strategy == "default" and self.num_logical_cpus > 1:
      raise ConfigError(f"--num_logical_cpus={self.num_logical_cpus} only makes sense with "
                        f"--strategy=mirrored or multi_worker.")
    if self.strategy == "mirrored" and self.num_logical_cpus and self.batch_size:
      per_replica_batch_size(self.batch_size, self.num_logical_cpus)  # Its replicas' shares.
    if self.weighting in SAMPLED_GRADIENTS and self.batch_size is not None:
      replicas = self.num_logical_cpus if self.strategy == "mirrored" else 1
      if self.batch_size < 3 * max(replicas, 1):
        raise ConfigError(f"--batch_size={self.batch_size}: --weighting={self.weighting} "
                          f"splits each replica's batch into 3 parts; it needs at least 3 "
                          f"examples per replica.")
    if self.strategy != "default" and self.task_gradients == "representation":
      # Each replica holds its own examples' rows of the representation: the global rows
      # are their concatenation, which no all-reduce gives.
      raise ConfigError(f"--task_gradients=representation runs on one device; with "
                        f"--strategy={self.strategy} use --task_gradients=parameters.")
    if self.precision not in PRECISIONS:
      raise ConfigError(f"--precision must be one of {list(PRECISIONS)}, got "
                        f"{self.precision!r}.")
    if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
      raise ConfigError(f"--seed must be >= 0, got {self.seed!r}.")
    if not isinstance(self.skip_nonfinite_steps, int) or self.skip_nonfinite_steps < 0:
      raise ConfigError(f"--skip_nonfinite_steps must be >= 0, got "
                        f"{self.skip_nonfinite_steps!r}.")
    if self.profile_steps is not None:
      if len(self.profile_steps) != 2 or not 0 <= self.profile_steps[0] < self.profile_steps[1]:
        raise ConfigError(f"--profile_steps needs 0 <= A < B, got {self.profile_steps}.")
    if self.select_by not in ("", "delta_m") and "/" not in self.select_by:
      raise ConfigError(f"--select_by must be TASK/METRIC or delta_m (empty: the task set's "
                        f"choice), got {self.select_by!r}.")
    if self.select_references and self.select_by != "delta_m":
      raise ConfigError("--select_references are Delta_m's references; they need "
                        "--select_by=delta_m.")
    if self.select_by == "delta_m" and not self.select_references:
      raise ConfigError("--select_by=delta_m needs --select_references: KEY=VALUE items or "
                        "model directories of runs to measure each task's gain against.")
    if self.trace_graph and not self.summaries:
      raise ConfigError("--trace_graph writes to the summaries; it conflicts with --nosummaries.")

  def with_defaults(self, defaults):
    """This config with unset fields taken from `defaults` (a task set's), then the engine's."""
    unknown = sorted(set(defaults) - set(ENGINE_DEFAULTS))
    if unknown:
      raise ConfigError(f"Task set {self.task_set} sets defaults for {unknown}, which are not "
                        f"settings with a task-set default {sorted(ENGINE_DEFAULTS)}.")
    filled = {name: defaults.get(name, value) for name, value in ENGINE_DEFAULTS.items()
              if getattr(self, name) is None}
    return dataclasses.replace(self, **filled)

  def to_json(self):
    """A JSON-able dict of every field (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

  @classmethod
  def from_json(cls, data, source="config.json"):
    """The RunConfig of a stored dict (to_json's); every malformed shape or field is one
    ConfigError naming `source` (the file) and the field."""
    if not isinstance(data, dict):
      raise ConfigError(f"{source}: holds a JSON {_json_kind(data)}, not the object of a "
                        f"run's settings; is this a model directory written by mtl-train?")
    if "task_set" not in data:
      raise ConfigError(f"{source}: no field 'task_set'; is this a model directory written "
                        f"by mtl-train?")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name, value in data.items():
      kind = _ELEMENTS.get(name)
      if name in fields and (not _json_matches(value, fields[name].type) or (
          kind and value is not None and not all(
              isinstance(v, kind) and not isinstance(v, bool) for v in value))):
        raise ConfigError(f"{source}: field {name!r} holds {_json_kind(value)} {value!r:.60}, "
                          f"not {_describe(fields[name].type)}.")
    try:
      return cls(**{k: v for k, v in data.items() if k in fields})
    except ConfigError as e:
      raise ConfigError(f"{source}: {e}") from None

  def resume_changes(self, stored, option_defaults=None):
    """Compares with a stored config (a dict as from to_json).

    Args:
      stored: the stored config.
      option_defaults: {option: its declared default} of the task set; an option the
        stored config lacks (the task set declared it later) had its default.
    Returns:
      (refused, applied): lists of (field, stored value, new value).
    """
    refused, applied = [], []
    defaults = RunConfig(task_set=self.task_set).to_json()
    option_defaults = option_defaults or {}
    for name, new in self.to_json().items():
      old = stored.get(name, defaults[name])  # A field newer than the stored config.
      if name == "options" and isinstance(old, dict):
        # Options are flags of their own (e.g. --hidden_size): name each that changed.
        old = {**{k: v for k, v in option_defaults.items() if k in new}, **old}
        refused += [(k, old.get(k), new.get(k)) for k in sorted({*old, *new})
                    if old.get(k) != new.get(k)]
      elif old != new:
        (refused if RESUME_POLICY[name] == "refuse" else applied).append((name, old, new))
    return refused, applied


# The elements of a stored config's arrays.
_ELEMENTS = {"tasks": str, "task_weights": (int, float), "profile_steps": int,
             "select_references": str, "weighting_options": str}


def _json_kind(value):
  return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null",
          int: "number", float: "number"}.get(type(value), type(value).__name__)


def _json_matches(value, annotation):
  """Whether a JSON value can stand for a field of type `annotation` (a tuple as an array of
  strings or numbers, a Mapping as an object)."""
  options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
      annotation,)
  for option in options:
    if option is type(None) and value is None:
      return True
    if option is bool and isinstance(value, bool):
      return True
    if option is int and isinstance(value, int) and not isinstance(value, bool):
      return True
    if option is float and isinstance(value, (int, float)) and not isinstance(value, bool):
      return True
    if option is str and isinstance(value, str):
      return True
    if option is tuple and isinstance(value, list) and all(
        isinstance(v, (str, int, float)) and not isinstance(v, bool) for v in value):
      return True
    if option is Mapping and isinstance(value, dict):
      return True
  return False


def _describe(annotation):
  names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
           tuple: "an array", Mapping: "an object", type(None): "null"}
  options = typing.get_args(annotation) if isinstance(annotation, types.UnionType) else (
      annotation,)
  return " or ".join(names[o] for o in options)


def per_replica_batch_size(batch_size, replicas):
  """The batch each of `replicas` replicas trains on; the global batch must divide evenly."""
  if batch_size % replicas:
    raise ConfigError(f"--batch_size={batch_size} must be a multiple of the {replicas} "
                      f"replicas the strategy trains on (each gets an equal share).")
  return batch_size // replicas
