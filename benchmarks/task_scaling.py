"""mtl-bench --task_counts: how each joint-mode method's step time grows with the number of tasks.

  mtl-bench --task_counts=2,8,32,64 --weightings=sum,pcgrad,mgda,upgrad,nash_mtl,famo
  mtl-bench --task_counts=16 --weightings=sum,mgda --representation_gradients

On the synthetic task set (mtlcore.synthetic: K regression tasks on Gaussian inputs, a shared
ReLU layer), each (K, method) trainer is built as mtl-train builds it (trainers.build), compiled
with XLA and warmed up (its compile time reported apart), then timed in --head_to_head_rounds
interleaved rounds of --steps steps each, every configuration once per round, the order
reversed every other round, so that the machine's drifts reach all of them. It prints per K
and method the median ms per step, the ratio to `sum` at the same K (when `sum` is timed),
and per method how the step grows from the smallest K to the largest (ratio and its slope in
log-log: 1.0 is linear in K), with the device and CPU it ran on.

For a gradient method it also times the aggregation alone: the method's `combine_gradients`
(its solver or projections, not the backward passes) compiled with XLA on its own, on rows of
the shape the step gives it ([K, P] over the shared parameters, [K, B x H] on the
representation, [3 K, P] for the sampled methods), filled with one shared direction, reversed
in every fourth row, plus independent noise per row (pairwise cosines about +-0.5: some rows
conflict, so a solver has constraints to settle). It runs 50 times in one compiled loop
per call, so the figure is the aggregation's own time without a call's dispatch; the
dispatch of one compiled call is printed beside it (the step pays one for the whole step).
"""

import statistics
import time

import numpy as np
import tensorflow as tf
from tensorflow.compiler.tf2xla.python import xla

from mtlcore.benchmarks import hardware
from mtlcore.trainers import build
from mtlcore.trainers.config import RunConfig

SIZES = {"input_dim": 100, "hidden_size": 256, "num_examples": 4096}


def warmed_trainer(config, steps, prepare=None):
  """The trainer of `config` (built as mtl-train builds it, in this process), after `steps`
  steps that trace and compile it; returns (trainer, those steps' seconds). `prepare(trainer)`
  (optional) runs between the build and the first step."""
  trainer = build.in_process(config, total_steps=10**6).trainer
  if prepare is not None:
    prepare(trainer)
  start = time.perf_counter()
  trainer.train(steps)  # Traces and compiles.
  return trainer, time.perf_counter() - start


def interleaved_rounds(trainers, steps, rounds):
  """{key: [ms per step of each round]}: every trainer runs `steps` steps once per round, in
  the order of `trainers`, reversed every other round, so the machine's drifts reach all."""
  keys, out = list(trainers), {key: [] for key in trainers}
  for r in range(rounds):
    for key in (keys if r % 2 == 0 else keys[::-1]):
      start = time.perf_counter()
      trainers[key].train(steps)
      out[key].append(1000 * (time.perf_counter() - start) / steps)
  return out


def _trainer(num_tasks, method, *, batch_size, steps, sizes):
  """`method`: a --weighting name, or NAME/representation for a gradient method with
  --task_gradients=representation. Returns (trainer, compile seconds, the shape of the rows
  its step gives `combine_gradients`, or None for a method that takes none)."""
  name, _, where = method.partition("/")
  config = RunConfig(task_set="synthetic", mode="joint", weighting=name,
                     task_gradients=where or "parameters", xla=True, batch_size=batch_size,
                     train_steps=10**6, options={**sizes, "num_tasks": num_tasks})
  shapes = []

  def record_rows(trainer):
    if not trainer.weighting.needs_task_gradients:
      return
    combine = trainer.weighting.combine_gradients

    def recording(rows, seed, labelled):  # Runs when the step is traced.
      shapes.append(tuple(rows.shape))
      return combine(rows, seed, labelled)
    trainer.weighting.combine_gradients = recording

  trainer, warm = warmed_trainer(config, steps, prepare=record_rows)
  if shapes:
    del trainer.weighting.combine_gradients  # The class's method again.
  return trainer, warm, (shapes[-1] if shapes else None)


def aggregation_ms(weighting, shape, *, calls, repeats=50):
  """[ms per aggregation, from each of `calls` calls] of `weighting.combine_gradients` alone,
  on rows of `shape` [R, N]: one shared direction, reversed in every fourth row, plus
  independent unit noise per row (so that some rows conflict, as the tasks' do, and a
  method's solver has constraints to settle). Each call runs the aggregation `repeats` times
  in one XLA-compiled loop and is divided by `repeats`, so that one call's dispatch
  (`dispatch_ms`) is spread thin. The rows are carried
  through the loop and each pass adds 1e-30 times the last direction's first entry to their
  first entry (in place), so that XLA cannot hoist the aggregation out of the loop."""
  rng = np.random.default_rng(0)
  signs = np.where(np.arange(shape[0]) % 4 == 3, -1.0, 1.0)[:, None]
  rows = tf.constant((signs * rng.normal(size=(1, shape[1])) + rng.normal(size=shape))
                     .astype(np.float32))
  labelled = tf.ones([len(weighting.task_names)], tf.bool)
  seed = tf.constant([0, 1], tf.int64)

  def body(i, r, last):
    r = xla.dynamic_update_slice(r, r[:1, :1] + 1e-30 * last[None, :1], [0, 0])
    return i + 1, r, weighting.combine_gradients(r, seed, labelled)[0]

  def repeated(r):
    start = (tf.constant(0), r, tf.zeros([shape[1]], tf.float32))
    return tf.while_loop(lambda i, *_: i < repeats, body, start)[2]

  aggregate = tf.function(repeated, jit_compile=True, autograph=False)
  aggregate(rows).numpy()  # Compiles.
  out = []
  for _ in range(calls):
    start = time.perf_counter()
    aggregate(rows).numpy()
    out.append(1000 * (time.perf_counter() - start) / repeats)
  return out


def dispatch_ms(calls):
  """[ms of each of `calls` calls] of an XLA-compiled function that does almost nothing (one
  scalar addition), timed to its result on the host: the floor of any one call."""
  nothing = tf.function(lambda x: x + 1.0, jit_compile=True, autograph=False)
  x = tf.constant(0.0)
  nothing(x).numpy()
  out = []
  for _ in range(calls):
    start = time.perf_counter()
    nothing(x).numpy()
    out.append(1000 * (time.perf_counter() - start))
  return out


def measure(task_counts, methods, *, steps=20, rounds=6, batch_size=64, sizes=None):
  """{(K, method): {"ms": [per round ms/step], "compile_s": warm-up seconds}}."""
  sizes = dict(SIZES, **(sizes or {}))
  configs = [(k, m) for k in task_counts for m in methods]
  trainers, out = {}, {}
  for k, m in configs:
    trainers[(k, m)], warm, shape = _trainer(k, m, batch_size=batch_size, steps=steps,
                                             sizes=sizes)
    out[(k, m)] = {"compile_s": warm, "rows": shape}
  for key, ms in interleaved_rounds(trainers, steps, rounds).items():
    out[key]["ms"] = ms
  for key, trainer in trainers.items():  # After the steps: it re-stages the method's state.
    if out[key]["rows"] is not None:
      out[key]["aggregation_ms"] = aggregation_ms(trainer.weighting, out[key]["rows"],
                                                  calls=max(steps, 5))
  return out


def table(results, task_counts, methods):
  """Markdown lines: ms/step (median), x sum at the same K, and the growth per method."""
  median = {key: statistics.median(v["ms"]) for key, v in results.items()}
  lines = ["| K | method | ms/step (median) | x sum | compile s | rows aggregated "
           "| aggregation ms (median) | aggregation / step |", "|---|---|---|---|---|---|---|---|"]
  for k in task_counts:
    for m in methods:
      ratio = (f"{median[(k, m)] / median[(k, 'sum')]:.2f}" if "sum" in methods else "-")
      result, aggregation = results[(k, m)], "| - | - | - |"
      if result.get("aggregation_ms"):
        alone = statistics.median(result["aggregation_ms"])
        aggregation = (f"| {' x '.join(map(str, result['rows']))} | {alone:.2f} "
                       f"| {100 * alone / median[(k, m)]:.0f}% |")
      lines.append(f"| {k} | {m} | {median[(k, m)]:.2f} | {ratio} | "
                   f"{result['compile_s']:.1f} {aggregation}")
  lo, hi = min(task_counts), max(task_counts)
  if hi > lo:
    lines += ["", f"| method | ms/step at K={hi} / at K={lo} | log-log slope |", "|---|---|---|"]
    for m in methods:
      growth = median[(hi, m)] / median[(lo, m)]
      lines.append(f"| {m} | {growth:.2f} | {np.log(growth) / np.log(hi / lo):.2f} |")
  return lines


def run(task_counts, methods, *, steps, rounds, batch_size):
  device = hardware.describe_device()
  print(f"device: {device}")
  results = measure(task_counts, methods, steps=steps, rounds=rounds, batch_size=batch_size)
  print(f"synthetic task set, {SIZES}, batch {batch_size}, XLA, {rounds} interleaved rounds "
        f"of {steps} steps per configuration")
  print("\n".join(table(results, task_counts, methods)))
  print(f"one compiled call's dispatch (not in the aggregation figures): "
        f"{statistics.median(dispatch_ms(max(steps, 5))):.3f} ms (median)")
  return 0
