"""What training under a tf.distribute strategy costs against the single-device step.

  mtl-bench --strategy=mirrored --num_logical_cpus=2
  python3 -m mtlcore.benchmarks.replicas --num_logical_cpus=4 --strategy_modes=default_lm

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

import statistics
import time

import numpy as np
import tensorflow as tf
from absl import flags

from mtlcore.benchmarks import hardware
from mtlcore.benchmarks import throughput as bench
from mtlcore.errors import ConfigError
from mtlcore.trainers import replicas as replicas_lib
from mtlcore.trainers.cli import common

FLAGS = flags.FLAGS
flags.DEFINE_list("strategy_modes", ["default_lm", "alternate"], "mtl-bench modes to time.")
flags.DEFINE_integer("rounds", 12, "Timed rounds (one call of each build per round).")
flags.DEFINE_integer("calls_steps", 5, "Steps per call into the compiled loop.")


def _split(batch, parts):
  """A global batch as `parts` per-replica batches (the examples cut in order)."""
  features, labels = batch
  cut = lambda t: np.array_split(t, parts)
  pieces = [({k: cut(v)[i] for k, v in features.items()},
             {k: cut(v)[i] for k, v in labels.items()}) for i in range(parts)]
  return pieces


def _trainer(mode, batches, strategy):
  config = bench.bench_config(mode, options=_options(mode), jit_compile=True,
                              batch_size=len(batches[0][0]["length"]), steps=10_000)
  with strategy.scope():
    return bench.build_bench_trainer(config, lambda tasks: bench.as_dataset(batches, tasks))


def _options(mode):
  lm = bench.lm_config()
  default = dict(trunk="bilstm", reads={"pos": 1}, crf=("chunk",))
  if mode == "default_lm":
    return dict(default, lm_vocab=lm.vocab_size)
  if mode == "default":
    return default
  return dict(trunk="bilstm", crf=(), word_dropout=0.0, reads={"pos": 1})


def run():
  replicas_lib.configure_logical_cpus(FLAGS.num_logical_cpus or 2)  # mtl-train's flag.
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
  for mode in FLAGS.strategy_modes:
    builds = {"one device": _trainer(mode, global_batches, tf.distribute.get_strategy()),
              f"mirrored x{len(devices)}": _trainer(mode, per_replica, strategy)}
    times = {name: [] for name in builds}
    for name, trainer in builds.items():
      trainer.train(FLAGS.calls_steps)  # Trace and compile.
      trainer.train(FLAGS.calls_steps)
    for _ in range(FLAGS.rounds):
      for name, trainer in builds.items():
        start = time.perf_counter()
        trainer.train(FLAGS.calls_steps)
        times[name].append((time.perf_counter() - start) / FLAGS.calls_steps)
    medians = {name: 1000 * statistics.median(t) for name, t in times.items()}
    one, mirrored = medians.values()
    print(f"{mode}: " + ", ".join(f"{n} {m:.1f} ms/step ({1000 * tokens / m:.0f} tokens/s)"
                                  for n, m in medians.items())
          + f"; step time mirrored / one device {mirrored / one:.2f}x")


def console_main():
  common.run("mtl-bench", run)


if __name__ == "__main__":
  console_main()
