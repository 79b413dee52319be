"""The one builder: a RunConfig in, the model, tasks, data streams, optimizers and trainer out.

mtl-train, mtl-eval, mtl-bench, mtl-compiles and the quality study all build through here, so
a benchmark times exactly the step that training runs:

  strategy = make_strategy(config)                    # first: it may set up devices
  config = resolve(config)                           # task set found, defaults filled in
  data = task_set.load_data(config.data_dir)          # read and checked before any write
  with strategy.scope():                              # every variable is made in it
    model, tasks = build_model(config, task_set, assets_dir=..., data=data)
    streams = make_streams(config, task_set, data, replicas=strategy.num_replicas_in_sync)
    trainer = build_trainer(config, model=model, tasks=tasks, streams=streams,
                            total_steps=total_steps(config, streams))

Modes: "joint" is a JointTrainer over one stream carrying every task's labels; "alternate" an
AlternatingTrainer with one stream and one optimizer per task and a TaskSampler; "single" a
JointTrainer over one task (the model then has only that task's head).
"""

import dataclasses
import math
import tempfile

import tensorflow as tf

from mtlcore import keras_parts, precision
from mtlcore import task_set as task_set_lib
from mtlcore.averaging import WeightAverage
from mtlcore.errors import ConfigError
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.schedules import LinearDecay
from mtlcore.trainers.alternating import AlternatingTrainer
from mtlcore.trainers.joint import JointTrainer
from mtlcore.trainers import workers
from mtlcore.trainers.config import per_replica_batch_size
from mtlcore.trainers.replicas import configure_logical_cpus
from mtlcore.weighting import make_weighting


@dataclasses.dataclass(frozen=True)
class Resolved:
  """A config with every default filled in, and the TaskSet it names."""
  config: object
  task_set: task_set_lib.TaskSet


def resolve(config, *, recorded_path=None):
  """Finds the task set, checks the tasks and weights against it, fills in the defaults.

  The returned config's `tasks` lists the trained tasks and its `options` every option of
  the task set (as TaskSet.options() reports them), so it can be stored and compared.
  recorded_path: where the run that stored `config` imported a registered task set from
  (mtlcore.task_set.import_path).
  """
  task_set = task_set_lib.resolve(config.task_set, config.options, recorded_path=recorded_path)
  try:
    tasks = task_set.check_tasks(config.tasks)
  except ConfigError as e:
    raise ConfigError(f"--tasks: {e} (--task_set={config.task_set})") from None
  if config.task_weights and len(config.task_weights) != len(tasks):
    raise ConfigError(f"--task_weights needs one number per task {list(tasks)}, got "
                      f"{list(config.task_weights)}.")
  config = dataclasses.replace(config.with_defaults(task_set.defaults), tasks=tasks,
                               options=task_set.options())
  return Resolved(config, task_set)


def make_strategy(config):
  """The tf.distribute strategy `config.strategy` names (the default one: a single device).

  Splits the CPU into `config.num_logical_cpus` devices first; "mirrored" then runs a replica
  on each of them (or on every GPU, when there are GPUs and no logical CPUs were asked for).
  """
  configure_logical_cpus(config.num_logical_cpus)
  if config.strategy == "default":  # RunConfig refuses logical CPUs it would not use.
    return tf.distribute.get_strategy()
  if config.strategy == "mirrored":
    devices = None
    if config.num_logical_cpus:
      devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices)
  return workers.multi_worker_strategy(config.worker_timeout)


def build_model(config, task_set, *, assets_dir, data=None):
  """(model with a head per trained task, [Task]) as the task set builds them. Keras layers
  the task set makes without a seed of their own draw their initial weights from the run's
  seed (mtlcore.keras_parts.seed_initializers)."""
  keras_parts.seed_initializers(config.seed)
  model = task_set.build_model(config.tasks, seed=config.seed, assets_dir=assets_dir,
                               data=data)
  model.check_tasks(config.tasks)
  model.set_compute_dtype(precision.compute_dtype(config.precision))
  return model, task_set.make_tasks(model, config.tasks)


def stream_seed(config, task_index=None):
  """The joint stream is shuffled with the run's seed, task i's own stream with seed+1+i."""
  return config.seed if task_index is None else config.seed + 1 + task_index


def make_streams(config, task_set, data, *, replicas=1):
  """{"joint": Stream} (joint and single mode) or {task: Stream} (alternate mode).

  Over `replicas` replicas each stream yields per-replica batches (--batch_size / replicas
  examples) and a global step takes `replicas` of them, so each Stream's steps_per_epoch is
  given in global steps.
  """
  batch_size = per_replica_batch_size(config.batch_size, replicas)

  def global_steps(stream):
    return dataclasses.replace(stream, steps_per_epoch=math.ceil(stream.steps_per_epoch
                                                                 / replicas))

  if config.mode == "alternate":
    return {t: global_steps(task_set.task_dataset(data, t, batch_size=batch_size,
                                                  seed=stream_seed(config, i)))
            for i, t in enumerate(config.tasks)}
  return {"joint": global_steps(task_set.joint_dataset(data, config.tasks, batch_size=batch_size,
                                                       seed=stream_seed(config)))}


def total_steps(config, streams):
  """--train_steps, else --epochs passes over the streams (alternate: over each task's)."""
  if config.train_steps:
    return config.train_steps
  per_epoch = sum(s.steps_per_epoch for s in streams.values())
  return max(1, round(config.epochs * per_epoch))


def steps_per_epoch(config, streams):
  """{task: batches in one pass over the data that task trains on}."""
  if config.mode == "alternate":
    return {t: streams[t].steps_per_epoch for t in config.tasks}
  return {t: streams["joint"].steps_per_epoch for t in config.tasks}


def build_sampler(config, streams, total_steps):
  """The alternate mode's TaskSampler: --sampler over the tasks' corpus sizes (batches per
  pass), or the weighted sampler with --task_weights."""
  kind = config.sampler or ("weighted" if config.task_weights else "uniform")
  return TaskSampler(config.tasks, config.task_weights or None, kind=kind,
                     sizes=[streams[t].steps_per_epoch for t in config.tasks],
                     temperature=config.sampler_temperature, total_steps=total_steps,
                     seed=config.seed)


def _adam(config, name, updates):
  """Adam at the base rate, decaying over `updates` updates as lr_decay_start says."""
  schedule = None
  if config.lr_decay_start < 1.0:
    schedule = LinearDecay(max(1, round(updates)), decay_start=config.lr_decay_start,
                           final=config.lr_final)
  return Adam(config.learning_rate, schedule=schedule, name=name)


def build_trainer(config, *, model, tasks, streams, total_steps):
  """The trainer `config.mode` names, over `streams` (as make_streams returns them).

  In alternate mode each task's optimizer schedules over the updates its task is expected to
  get (total_steps x its expected share of the sampler's draws); a shared optimizer
  (--noper_task_optimizer) over all total_steps.
  """
  average = None
  if config.average_decay > 0:
    average = WeightAverage(model.variables_to_train(), decay=config.average_decay)
  common = dict(model=model, tasks=tasks, seed=config.seed, jit_compile=config.xla,
                clip_norm=config.clip_norm or None,
                max_nonfinite_steps=config.skip_nonfinite_steps, weight_average=average,
                frozen_variables=model.owners.trunk_variables if config.freeze_trunk else (),
                loss_scale=precision.LossScale() if config.precision == "fp16" else None)
  if config.mode in ("joint", "single"):
    weighting = make_weighting(config.weighting, config.tasks,
                               weights=config.task_weights or None,
                               period=streams["joint"].steps_per_epoch,
                               options=dict(o.split("=", 1) for o in config.weighting_options))
    return JointTrainer(optimizer=_adam(config, "adam", total_steps),
                        dataset=streams["joint"].make_dataset, weighting=weighting,
                        task_gradients=config.task_gradients, **common)
  sampler = build_sampler(config, streams, total_steps)
  if config.per_task_optimizer:
    optimizers = {t: _adam(config, f"adam_{t}", total_steps * share)
                  for t, share in zip(config.tasks, sampler.expected_share())}
  else:
    shared = _adam(config, "adam", total_steps)
    optimizers = {t: shared for t in config.tasks}
  return AlternatingTrainer(
      optimizers=optimizers,
      datasets={t: streams[t].make_dataset for t in config.tasks}, sampler=sampler, **common)


@dataclasses.dataclass(frozen=True)
class InProcess:
  """What `in_process` builds: the resolved config, its task set, the loaded data, the model
  and the trainer."""
  config: object
  task_set: task_set_lib.TaskSet
  data: object
  model: object
  trainer: object


def in_process(config, *, total_steps):
  """Builds a run on one device in this process, without a model directory (benchmarks and
  studies that train and score in memory): resolve, load the data, build the model (its
  assets written to a temporary directory removed at once, so not for a run that exports),
  the streams and the trainer, whose schedules span `total_steps`."""
  resolved = resolve(config)
  config, task_set = resolved.config, resolved.task_set
  data = task_set.load_data(config.data_dir)
  with tempfile.TemporaryDirectory() as assets_dir:
    model, tasks = build_model(config, task_set, assets_dir=assets_dir, data=data)
  streams = make_streams(config, task_set, data)
  trainer = build_trainer(config, model=model, tasks=tasks, streams=streams,
                          total_steps=total_steps)
  return InProcess(config, task_set, data, model, trainer)
