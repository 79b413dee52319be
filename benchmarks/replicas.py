"""What training under a tf.distribute strategy costs against the single-device step.

  mtl-bench --strategy=mirrored --num_logical_cpus=2 --modes=default_lm,alternate
  mtl-bench --strategy=mirrored --num_logical_cpus=4 --modes=default_lm --steps=100
  mtl-bench --strategy=mirrored --modes=default --weightings=sum,uncertainty,famo,pcgrad,upgrad

mtl-bench's --modes, --weightings (joint modes only), --steps (timed steps per build) and
--steps_per_call apply.

In one process it builds, for each mode, the step mtl-train runs (mtl-bench's synthetic
CoNLL-2000-shaped batches, the same global batch) twice: on one device (the whole step one XLA
program) and under MirroredStrategy over the logical CPU devices (each replica's forward and
backward compiled with XLA on its half of the batch; the all-reduce, the non-finite guard and
the update outside XLA, trainers.replicas). It times them interleaved (one call of each per
round), and prints the median ms per step and real tokens/s of each, their ratio, and the
device. On one CPU
split into logical devices the replicas share the same cores, so the ratio measures the
price of the split step (two compiled programs, the reduction and an update outside XLA),
not a speed-up; with real devices the replicas run side by side.
"""

import itertools
import statistics
import time

import numpy as np
import tensorflow as tf
from absl import flags

from mtlcore.benchmarks import hardware
from mtlcore.errors import ConfigError
from mtlcore.trainers import replicas as replicas_lib

FLAGS = flags.FLAGS


def _split(batch, parts):
  """A global batch as `parts` per-replica batches (the examples cut in order)."""
  features, labels = batch
  cut = lambda t: np.array_split(t, parts)
  pieces = [({k: cut(v)[i] for k, v in features.items()},
             {k: cut(v)[i] for k, v in labels.items()}) for i in range(parts)]
  return pieces


def _trainer(bench, mode, batches, strategy, weighting):
  options = bench.row_options(mode, trunk="bilstm", reads={"pos": 1})
  config = bench.bench_config(mode, options=options, jit_compile=True,
                              batch_size=len(batches[0][0]["length"]), steps=10_000,
                              weighting=weighting)
  with strategy.scope():
    return bench.build_bench_trainer(config, lambda tasks: bench.as_dataset(batches, tasks))


def run(bench):
  """Times the modes; `bench` is mtl-bench's module (mtlcore.benchmarks.throughput), whose
  flags, batches and builders it uses."""
  # mtl-train's flag; unset, two devices (a value given, 0 included, is checked below).
  replicas_lib.configure_logical_cpus(
      FLAGS.num_logical_cpus if FLAGS["num_logical_cpus"].present else 2)
  devices = [d.name for d in tf.config.list_logical_devices("CPU")]
  if len(devices) < 2:
    raise ConfigError("--num_logical_cpus must be at least 2 to compare replicas.")
  strategy = tf.distribute.MirroredStrategy(devices)
  batch_size = bench.DEFAULT_BATCH_SIZE
  global_batches = bench.synthetic_batches(8, batch_size, 36,
                                           lm_vocab=bench.lm_config().vocab_size)
  per_replica = [p for b in global_batches for p in _split(b, len(devices))]
  tokens = float(np.mean([b[0]["length"].sum() for b in global_batches]))
  print(f"device: {hardware.describe_device()}; replicas: {len(devices)} logical CPUs; "
        f"global batch {batch_size} x 36 tokens")
  calls = FLAGS.steps_per_call
  for mode, method in itertools.product(FLAGS.modes, FLAGS.weightings):
    if method != "sum" and mode not in ("joint", "default", "default_lm"):
      continue  # Weighting methods are joint mode's.
    builds = {"one device": _trainer(bench, mode, global_batches, tf.distribute.get_strategy(),
                                     method),
              f"mirrored x{len(devices)}": _trainer(bench, mode, per_replica, strategy, method)}
    times = {name: [] for name in builds}
    for name, trainer in builds.items():
      trainer.train(calls)  # Trace and compile.
      trainer.train(calls)
    for _ in range(max(FLAGS.steps // calls, 3)):
      for name, trainer in builds.items():
        start = time.perf_counter()
        trainer.train(calls)
        times[name].append((time.perf_counter() - start) / calls)
    medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
    one, mirrored = medians.values()
    label = mode if method == "sum" else f"{mode} --weighting={method}"
    print(f"{label}: " + ", ".join(f"{n} {m:.1f} ms/step ({1000 * tokens / m:.0f} tokens/s)"
                                  for n, m in medians.items())
          + f"; step time mirrored / one device {mirrored / one:.2f}x")
