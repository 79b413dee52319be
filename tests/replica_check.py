"""Run in a subprocess by test_replicas.py: `python -m tests.replica_check MODE[,MODE...] DATA_DIR`.

MODE joint or alternate: the step check below. MODE restore: a checkpoint written on one
device restores under the strategy (both replicas' copies) and the other way round; prints
the largest difference. MODE seeds: each replica's dropout seed in one step. MODE errors:
the one-line errors a strategy adds, one per line. MODE keras: Keras layers with
BatchNormalization, mirrored against one device (see `keras`). MODE methods: every kind of
weighting method, mirrored against one device (see `methods`).

Splits the CPU into 2 logical devices (before TensorFlow starts), builds the same tagger
(joint: CoNLL-2000 task set with the language-model task, BiLSTM-CRF; alternate: POS and
chunking on the conv trunk with the CRF; dropout off) twice from one
seed, once under MirroredStrategy over the 2 devices and once on a single device, and feeds
them the same data: each distributed step gets two per-replica batches from the per-replica
stream, the single-device step gets both in one global batch (padded to the longer one).
Prints one JSON line:

  grad_diff: the largest |difference| between the all-reduced gradients of the first
    distributed step (alternating: of each task's first step) and the gradients of the
    single-device step, over every variable;
  grad_scale: the largest |gradient| (to see the difference is small against it);
  weight_diff: the largest |difference| between the variables after `STEPS` Adam steps
    (rate 1e-2);
  uneven: steps (of every stream) whose two replica batches differ in their longest sentence.
"""

import dataclasses
import functools
import json
import sys
import tempfile
import time

import numpy as np

from mtlcore.trainers import replicas

replicas.configure_logical_cpus(2)

import tensorflow as tf  # pylint: disable=wrong-import-position

from mtlcore.errors import ConfigError  # pylint: disable=wrong-import-position
from mtlcore.optimizers import Adam  # pylint: disable=wrong-import-position
from mtlcore.sampling import TaskSampler  # pylint: disable=wrong-import-position
from mtlcore.trainers import build  # pylint: disable=wrong-import-position
from mtlcore.trainers.alternating import AlternatingTrainer  # pylint: disable=wrong-import-position
from mtlcore.trainers.config import RunConfig  # pylint: disable=wrong-import-position
from mtlcore.trainers.joint import JointTrainer  # pylint: disable=wrong-import-position
from tests.recording_adam import RecordingAdam  # pylint: disable=wrong-import-position

STEPS = 4
PER_REPLICA = 4
TINY = {"word_dim": 8, "char_filters": 4, "hidden_size": 8, "dropout": 0.0,
        "word_dropout": 0.0, "lm_vocab": 50, "buckets": [32]}


def pad_concat(a, b):
  """Two batches (nests of [B, ...] arrays) as one, each array zero-padded to the larger."""
  def join(x, y):
    x, y = np.asarray(x), np.asarray(y)
    shape = np.maximum(x.shape[1:], y.shape[1:])
    pad = lambda t: np.pad(t, [(0, 0)] + [(0, s - d) for s, d in zip(shape, t.shape[1:])])
    return np.concatenate([pad(x), pad(y)])
  return tf.nest.map_structure(join, a, b)


def as_maker(batches):
  """`start -> dataset` over a fixed list of batches."""
  def make(start):
    rest = batches[start:]
    return tf.data.Dataset.from_generator(
        lambda: iter(rest), output_signature=tf.nest.map_structure(
            lambda t: tf.TensorSpec([None] * np.ndim(t), tf.as_dtype(np.asarray(t).dtype)),
            rest[0]))
  return make


def build_pair(mode, data_dir, strategy):
  """(distributed trainer, single-device trainer, replica batches of step 0)."""
  # Alternating: POS and chunking on the conv trunk (each task's step compiles per device;
  # the LM task, its loss_count and the BiLSTM's loops are the joint check's).
  options = TINY if mode == "joint" else dict(TINY, lm_vocab=0, trunk="conv")
  resolved = build.resolve(RunConfig(task_set="conll2000", mode=mode, data_dir=data_dir,
                                     options=options, batch_size=2 * PER_REPLICA))
  config, task_set = resolved.config, resolved.task_set
  data = task_set.load_data(data_dir)
  tasks = list(config.tasks)
  assets = tempfile.mkdtemp()
  build.build_model(config, task_set, assets_dir=assets, data=data)  # Makes the vocabularies.

  def per_replica_batches(task=None, seed=0):
    stream = (task_set.joint_dataset(data, tasks, batch_size=PER_REPLICA, seed=seed)
              if task is None else
              task_set.task_dataset(data, task, batch_size=PER_REPLICA, seed=seed))
    return [tf.nest.map_structure(lambda t: t.numpy(), b)
            for b in stream.make_dataset(0).take(2 * STEPS)]

  streams = {None: per_replica_batches()} if mode == "joint" else {
      t: per_replica_batches(t, i + 1) for i, t in enumerate(tasks)}
  trainers = []
  for scope in (strategy.scope(), tf.distribute.get_strategy().scope()):
    with scope:
      model, task_objects = build.build_model(config, task_set, assets_dir=assets,
                                              data=data)
      global_batches = {k: [pad_concat(b[2 * i], b[2 * i + 1]) for i in range(STEPS)]
                        for k, b in streams.items()}
      distributed = not trainers  # The first is built under the strategy.
      source = streams if distributed else global_batches
      if mode == "joint":
        trainers.append(JointTrainer(model=model, tasks=task_objects,
                                     optimizer=RecordingAdam(1e-2), dataset=as_maker(source[None])))
      else:
        trainers.append(AlternatingTrainer(
            model=model, tasks=task_objects, optimizers={t: RecordingAdam(1e-2) for t in tasks},
            datasets={t: as_maker(source[t]) for t in tasks},
            sampler=TaskSampler(tasks, kind="round_robin", seed=0)))
  longest = lambda batch: int(batch[0]["length"].max())
  uneven = sum(longest(b[2 * i]) != longest(b[2 * i + 1])
               for b in streams.values() for i in range(STEPS))
  return trainers[0], trainers[1], uneven


def max_diff(a, b):
  return max(float(np.max(np.abs(np.subtract(x.numpy(), y.numpy(), dtype=np.float64))))
             for x, y in zip(a, b))


def main(mode, data_dir):
  strategy = mirrored()
  distributed, single, uneven = build_pair(mode, data_dir, strategy)
  first = 1 if mode == "joint" else len(single.tasks)  # Round robin: one step of each task.
  for trainer in (distributed, single):
    trainer.train(first)
  grads = lambda t: [g for o in dict.fromkeys(t.optimizers.values() if mode != "joint"
                                               else [t.optimizer]) for g in o.first]
  grad_diff = max_diff(grads(distributed), grads(single))
  grad_scale = max(float(np.max(np.abs(g.numpy()))) for g in grads(single))
  for trainer in (distributed, single):
    trainer.train(STEPS - first)
  weight_diff = max_diff(distributed.model.trainable_variables, single.model.trainable_variables)
  print(json.dumps({"grad_diff": grad_diff, "grad_scale": grad_scale,
                    "weight_diff": weight_diff, "uneven": uneven,
                    "steps": int(distributed.global_step.numpy())}))


def restore(data_dir):
  """Largest |difference| after a single-device -> mirrored and a mirrored -> single-device
  checkpoint round trip, over every variable and every replica's copy."""
  strategy = mirrored()
  resolved = build.resolve(RunConfig(task_set="conll2000", data_dir=data_dir, options=TINY))
  config, task_set = resolved.config, resolved.task_set
  data, assets = task_set.load_data(data_dir), tempfile.mkdtemp()
  diffs, before = [], []
  for writer_seed, write_scope, read_scope in ((1, None, strategy), (2, strategy, None)):
    models = []
    for seed, scope in ((writer_seed, write_scope), (0, read_scope)):
      with (scope or tf.distribute.get_strategy()).scope():
        models.append(build.build_model(dataclasses.replace(config, seed=seed), task_set,
                                        assets_dir=assets, data=data)[0])
    before.append(max(float(np.max(np.abs(a.numpy() - b.numpy())))
                      for a, b in zip(models[0].variables, models[1].variables)))
    path = tf.train.Checkpoint(model=models[0]).save(tempfile.mkdtemp() + "/ckpt")
    tf.train.Checkpoint(model=models[1]).restore(path).assert_existing_objects_matched()
    for a, b in zip(models[0].variables, models[1].variables):
      copies = [v.numpy() for v in getattr(b, "values", [b])] + [
          v.numpy() for v in getattr(a, "values", [a])]
      diffs.append(max(float(np.max(np.abs(c - copies[0]))) for c in copies))
  print(json.dumps({"restore_diff": max(diffs), "variables": len(diffs),
                    "differed_before": min(before)}))


def seeds(data_dir):
  """Each replica's dropout seed at global step 0, as strategy.run gives it."""
  strategy = mirrored()
  distributed, _, _ = build_pair("joint", data_dir, strategy)
  per_replica = strategy.run(tf.function(distributed.step_seed))
  print(json.dumps({"seeds": [v.numpy().tolist() for v in per_replica.values]}))


def errors(data_dir):
  """What a strategy adds for joint training: a gradient method is built ("no error"); a task
  without loss_count is a ConfigError."""
  strategy = mirrored()
  resolved = build.resolve(RunConfig(task_set="conll2000", data_dir=data_dir, options=TINY,
                                     weighting="pcgrad"))
  config, task_set = resolved.config, resolved.task_set
  data = task_set.load_data(data_dir)
  stream = task_set.joint_dataset(data, config.tasks, batch_size=PER_REPLICA, seed=0)
  with strategy.scope():
    model, tasks = build.build_model(config, task_set, assets_dir=tempfile.mkdtemp(), data=data)
    for make in (
        lambda: build.build_trainer(config, model=model, tasks=tasks,
                                    streams={"joint": stream}, total_steps=10),
        lambda: JointTrainer(model=model, tasks=[dataclasses.replace(t, loss_count=None)
                                                 if t.name == "chunk" else t for t in tasks],
                             optimizer=Adam(), dataset=stream.make_dataset)):
      try:
        make()
        print("no error")
      except ConfigError as e:
        print(e)


# One weighting of each way under a strategy: linear in the losses, one backward pass per
# replica (uncertainty: its own variables' gradient taken across replicas); from per-task
# rows summed over replicas: non-linear (famo, with its second forward pass), gradnorm (its
# layer norms), a gradient method (imtl: rows of the scaled losses, its own variables;
# db_mtl: its [K, P] moving averages, one copy per replica, over every shared column;
# sdmgrad: 3 K rows, of three strided parts of each replica's batch, each part's loss divided
# by its count over the replicas before the backward pass). Each
# costs 8-15 s of this process. Left out for time, the same paths: rlw (its draws, 1.5e-8
# apart from one device when last run), gls, stch, pcgrad, graddrop, upgrad (0.6e-7 ..
# 0.75e-7).
METHODS = ("uncertainty", "famo", "gradnorm", "imtl", "db_mtl", "sdmgrad")
# sdmgrad with one iteration of its weights: its 20 default iterations at rate 5 amplify the
# float32 summation-order differences of the Gram matrix (the replicas' rows are summed) to
# 5.3e-6 in the variables and 1.7e-5 in the logged weights after 4 steps; with one, 1.5e-8
# and 6e-8 (measured), so the check sees the path's exactness, not the solver's conditioning.
OPTIONS = {"sdmgrad": {"iterations": 1}}
# Each replica's batch in `methods`: a multiple of 3, so that sdmgrad's three strided parts of
# the replicas' batches are those of one device's global batch.
METHODS_PER_REPLICA = 6


def methods(data_dir):
  """Each weighting method, joint, mirrored over 2 replicas against one device on the global
  batch: 3 synthetic regression tasks on an MMoE trunk (each task's gate is its own part of
  the trunk), task t1 unlabelled in one replica's half of step 1 and in all of step 2.
  Prints {method: [largest |difference| over every model and weighting variable after STEPS
  steps, largest |value| of those variables, largest |difference| of the logged weights,
  largest |difference| between a mirrored variable's replica copies, how many times the
  mirrored trainer traced its compiled aggregation]}."""
  del data_dir
  from mtlcore.weighting import make_weighting  # pylint: disable=g-import-not-at-top
  strategy = mirrored()
  resolved = build.resolve(RunConfig(
      task_set="synthetic", batch_size=2 * METHODS_PER_REPLICA,
      options={"num_tasks": 3, "architecture": "mmoe", "input_dim": 6, "sinusoids": 2,
               "num_examples": 64, "experts": 2, "expert_size": 4}))
  config, task_set = resolved.config, resolved.task_set
  data, tasks = task_set.load_data(None), list(config.tasks)
  halves = [tf.nest.map_structure(lambda t: t.numpy().copy(), b) for b in task_set.joint_dataset(
      data, tasks, batch_size=METHODS_PER_REPLICA, seed=0).make_dataset(0).take(2 * STEPS)]
  for half in halves[2:3] + halves[4:6]:  # Step 1's first replica, both halves of step 2.
    half[1]["t1"][:] = np.nan
  whole = [tf.nest.map_structure(lambda a, b: np.concatenate([a, b]), halves[2 * i],
                                 halves[2 * i + 1]) for i in range(STEPS)]
  out = {}
  for method in METHODS:
    started = time.time()
    trainers, weights = [], []
    for scope, stream in ((strategy.scope(), halves),
                          (tf.distribute.get_strategy().scope(), whole)):
      with scope:
        model, task_objects = build.build_model(config, task_set, assets_dir=tempfile.mkdtemp(),
                                                data=data)
        trainers.append(JointTrainer(
            model=model, tasks=task_objects, optimizer=Adam(1e-2), dataset=as_maker(stream),
            weighting=make_weighting(method, tasks, period=2, options=OPTIONS.get(method))))
      logs = trainers[-1].train(STEPS)
      weights.append([logs.tasks[t].metrics["weight"] for t in tasks])
    state = lambda t: list(t.model.variables_to_train()) + list(t.weighting.variables)
    copies = [float(np.max(np.abs(np.subtract(c.numpy(), v.values[0].numpy(), dtype=np.float64))))
              for v in state(trainers[0]) for c in getattr(v, "values", [v])]
    out[method] = [max_diff(state(trainers[0]), state(trainers[1])),
                   max(float(np.max(np.abs(v.numpy()))) for v in state(trainers[1])),
                   float(np.max(np.abs(np.subtract(*weights)))), max(copies),
                   trainers[0]._aggregate.experimental_get_tracing_count()]
    print(method, out[method], f"{time.time() - started:.1f} s", file=sys.stderr, flush=True)
  print(json.dumps(out))


def keras_model(seed):
  """Keras layers in mtlcore modules: Dense + BatchNormalization trunk, BatchNormalization +
  Dense regression heads "a" and "b" (dropout off, so one device can match two replicas)."""
  import keras  # pylint: disable=g-import-not-at-top
  from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead  # pylint: disable=g-import-not-at-top

  class Trunk(SharedTrunk):
    def __init__(self):
      super().__init__()
      self.net = keras.Sequential([keras.layers.Dense(8, use_bias=False),  # BN centres it.
                                   keras.layers.BatchNormalization(momentum=0.5),
                                   keras.layers.ReLU()])
      self.net.build((None, 4))
      self.output_sizes = {"hidden": 8}

    def __call__(self, features, *, training, seed):
      return {"hidden": self.net(features["x"], training=training)}

  class Head(TaskHead):
    def __init__(self):
      super().__init__(reads="hidden")
      self.net = keras.Sequential([keras.layers.BatchNormalization(momentum=0.5),
                                   keras.layers.Dense(1)])
      self.net.build((None, 8))

    def __call__(self, representation, features, *, training, seed):
      return self.net(representation, training=training)

  keras.utils.set_random_seed(seed)
  return MultiTaskModel(Trunk(), {"a": Head(), "b": Head()})


def keras(data_dir):
  """Keras layers with BatchNormalization, 4 joint steps mirrored over 2 replicas against one
  device on the global batch. With both replicas given the same half batch, the batch
  statistics equal the global batch's, so every variable and moving statistic must match
  (same_weight_diff, same_state_diff). With different halves, the trunk's moving mean after
  the first step (the mean of the replicas' updates) must equal one device's
  (split_trunk_mean_diff), and after every step each replica's copy of every moving
  statistic must hold one value (split_copies_diff). same_moved: the smallest moving mean's
  largest |value| (that they moved at all)."""
  del data_dir
  from mtlcore import losses  # pylint: disable=g-import-not-at-top
  from mtlcore.tasks import Task  # pylint: disable=g-import-not-at-top
  strategy = mirrored()
  x = np.random.default_rng(0).normal(size=(STEPS, 2 * PER_REPLICA, 4)).astype(np.float32)
  batch = lambda v: ({"x": v}, {"a": v[:, :1] * 2.0, "b": v[:, 1:2] - v[:, 2:3]})
  count = lambda labels, features: tf.cast(tf.size(labels), tf.float32)
  tasks = [Task(t, loss=lambda l, p, f: losses.squared_error(l, p), loss_count=count)
           for t in ("a", "b")]
  state = lambda t: [v.value for v, _ in t.model.owners.state]  # Per BN: mean, variance.
  out = {}
  for name, halves in (("same", lambda s: (x[s, :PER_REPLICA], x[s, :PER_REPLICA])),
                       ("split", lambda s: (x[s, :PER_REPLICA], x[s, PER_REPLICA:]))):
    per_replica = [batch(h) for s in range(STEPS) for h in halves(s)]
    whole = [batch(np.concatenate(halves(s))) for s in range(STEPS)]
    trainers = []
    for scope, stream in ((strategy.scope(), per_replica),
                          (tf.distribute.get_strategy().scope(), whole)):
      with scope:
        trainers.append(JointTrainer(model=keras_model(3), tasks=tasks, optimizer=Adam(1e-2),
                                     dataset=as_maker(stream)))
    for trainer in trainers:
      trainer.train(1)
    if name == "split":
      out["split_trunk_mean_diff"] = max_diff(state(trainers[0])[:1], state(trainers[1])[:1])
    for trainer in trainers:
      trainer.train(STEPS - 1)
    if name == "same":
      out["same_weight_diff"] = max_diff(trainers[0].model.variables_to_train(),
                                         trainers[1].model.variables_to_train())
      out["same_state_diff"] = max_diff(state(trainers[0]), state(trainers[1]))
      out["same_moved"] = min(float(np.max(np.abs(v.numpy()))) for v in state(trainers[1])[::2])
    else:
      out["split_copies_diff"] = max(float(np.max(np.abs(c.numpy() - v.values[0].numpy())))
                                     for v in state(trainers[0]) for c in v.values)
  print(json.dumps(out))


@functools.cache  # One strategy for every check of the process: a second one's collectives
def mirrored():   # would reuse the first one's instance keys.
  strategy = tf.distribute.MirroredStrategy([d.name for d in
                                             tf.config.list_logical_devices("CPU")])
  assert strategy.num_replicas_in_sync == 2
  return strategy


if __name__ == "__main__":
  # MODE[,MODE...] DATA_DIR: every check in one process (one TensorFlow start-up), each
  # check's output after a line `### MODE`.
  for check in sys.argv[1].split(","):
    print(f"### {check}", flush=True)
    if check in ("joint", "alternate"):
      main(check, sys.argv[2])
    else:
      globals()[check](sys.argv[2])
