"""mtl-bench --architectures: each trunk architecture's step against hard sharing at the same
parameter count.

  mtl-bench --architectures=hard,mmoe,cgc,ple,cross_stitch,mtan --task_counts=2,8

On the synthetic task set (mtlcore.synthetic; 100 Gaussian inputs), for each number of tasks K
(--task_counts, default 2) the hard-sharing trunk has `HARD_HIDDEN` units; every other
architecture gets the size (`expert_size` for moe, mmoe, cgc, ple and dselect_k, `hidden_size`
for cross_stitch and mtan) whose whole model's parameter count (trunk and heads) is nearest to
hard sharing's at that K, with the other sizes at the task set's defaults (8 experts; one shared
and one task expert per level; 2 levels; 2 layers). Each (K, architecture, mode) trainer is
built as mtl-train builds it (trainers.build), joint with `sum` and alternating (uniform
sampler), compiled with XLA and warmed up (compile time reported apart), then timed in
--head_to_head_rounds interleaved rounds of --steps steps, the order reversed every other round.
Prints per row the parameter count, the median ms per step and its ratio to hard sharing in the
same mode and K, with the device and CPU it ran on.

  mtl-bench --architectures=hard,mmoe,cgc,ple,cross_stitch,mtan --architecture_task_set=conll2000

On the CoNLL-2000 tagger (mtl-train's default: CRF chunk head, word dropout), fed synthetic
batches shaped like CoNLL-2000's (mtlcore.benchmarks.throughput: --batch_size, default 32, x
--seq_len tokens), for each of --trunks: hard sharing is the default tagger (POS reading the
first layer); under any other architecture the top trunk layer becomes the architecture and
both heads read it. Each architecture is timed twice: at the tagger's default sizes (what
`mtl-train --architecture=NAME` trains) and with `expert_size` bisected to hard sharing's
parameter count (embeddings included).
"""

import functools
import statistics
import time

from mtlcore.benchmarks import hardware
from mtlcore.benchmarks.task_scaling import interleaved_rounds, warmed_trainer
from mtlcore.synthetic.task_set import SyntheticTaskSet
from mtlcore.trainers import build
from mtlcore.trainers.config import RunConfig

INPUT_DIM = 100
HARD_HIDDEN = 256
MODES = ("joint", "alternate")
# The size each architecture is matched by.
SIZE_OPTION = {"moe": "expert_size", "mmoe": "expert_size", "cgc": "expert_size", "ple": "expert_size",
               "cross_stitch": "hidden_size", "mtan": "hidden_size", "hard": "hidden_size",
               "dselect_k": "expert_size"}


def parameter_count(architecture, num_tasks, size):
  """Trainable parameters of the synthetic model (trunk and heads) with that size."""
  options = {"num_tasks": num_tasks, "input_dim": INPUT_DIM, "num_examples": 64,
             "architecture": architecture, SIZE_OPTION[architecture]: size}
  task_set = SyntheticTaskSet(options)
  model = task_set.build_model(list(task_set.task_names), seed=0, assets_dir=None)
  return sum(int(v.shape.num_elements()) for v in model.trainable_variables)


def nearest_size(count, target, largest):
  """(size, count(size)) of the size in [1, largest] whose parameter count `count(size)` is
  nearest `target` (bisection: the count grows with the size)."""
  lo, hi = 1, largest
  while hi - lo > 1:
    mid = (lo + hi) // 2
    lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
  counts = {s: count(s) for s in (lo, hi)}
  size = min(counts, key=lambda s: abs(counts[s] - target))
  return size, counts[size]


def matched_size(architecture, num_tasks, target):
  """The size of `architecture` whose parameter count is nearest `target`, and that count."""
  return nearest_size(lambda size: parameter_count(architecture, num_tasks, size), target,
                      4 * HARD_HIDDEN)


def measure(architectures, task_counts, *, steps=20, rounds=6, batch_size=64):
  """{(K, architecture, mode): {"ms": [per round], "compile_s", "params", "size"}}."""
  out, trainers = {}, {}
  for k in task_counts:
    target = parameter_count("hard", k, HARD_HIDDEN)
    for a in architectures:
      size, params = ((HARD_HIDDEN, target) if a == "hard" else matched_size(a, k, target))
      options = {"num_tasks": k, "input_dim": INPUT_DIM, "num_examples": 4096,
                 "architecture": a, SIZE_OPTION[a]: size}
      for mode in MODES:
        trainers[(k, a, mode)], warm = warmed_trainer(
            RunConfig(task_set="synthetic", mode=mode, xla=True, batch_size=batch_size,
                      train_steps=10**6, options=options), steps)
        out[(k, a, mode)] = {"compile_s": warm, "params": params,
                             "size": f"{SIZE_OPTION[a]}={size}"}
  for key, ms in interleaved_rounds(trainers, steps, rounds).items():
    out[key]["ms"] = ms
  return out


def table(results, architectures, task_counts):
  """Markdown lines: per K, mode and architecture the size, parameters, median ms/step and
  the ratio to hard sharing."""
  median = {key: statistics.median(v["ms"]) for key, v in results.items()}
  lines = ["| K | mode | architecture | size | parameters | ms/step (median) | x hard | "
           "compile s |", "|---|---|---|---|---|---|---|---|"]
  for k in task_counts:
    for mode in MODES:
      for a in architectures:
        row = results[(k, a, mode)]
        ratio = (f"{median[(k, a, mode)] / median[(k, 'hard', mode)]:.2f}"
                 if "hard" in architectures else "-")
        lines.append(f"| {k} | {mode} | {a} | {row['size']} | {row['params']:,} | "
                     f"{median[(k, a, mode)]:.2f} | {ratio} | {row['compile_s']:.1f} |")
  return lines


def tagger_options(architecture, trunk, expert_size=0):
  """The conll2000 task set's options of a tagger row (expert_size 0: the default, the trunk's
  output size)."""
  from mtlcore.benchmarks import throughput  # pylint: disable=g-import-not-at-top
  if architecture == "hard":
    return throughput.row_options("default", trunk=trunk, reads={"pos": 1})
  return throughput.row_options("default", trunk=trunk, reads={}, architecture=architecture,
                                expert_size=expert_size)


def tagger_config(architecture, trunk, mode, *, expert_size=0, batch_size=32):
  from mtlcore.benchmarks import throughput  # pylint: disable=g-import-not-at-top
  return throughput.bench_config(mode, options=tagger_options(architecture, trunk, expert_size),
                                 jit_compile=True, batch_size=batch_size, steps=10**6)


@functools.lru_cache(maxsize=None)
def tagger_parameter_count(architecture, trunk, expert_size=0):
  """Trainable parameters of the tagger (embeddings, trunk and both heads) of that row, with
  CoNLL-2000's vocabulary sizes."""
  from mtlcore.benchmarks import throughput  # pylint: disable=g-import-not-at-top
  resolved = build.resolve(tagger_config(architecture, trunk, "joint", expert_size=expert_size))
  model = resolved.task_set.build_model_for(resolved.config.tasks,
                                            throughput.synthetic_vocabularies(), seed=0)
  return sum(int(v.shape.num_elements()) for v in model.trainable_variables)


def tagger_matched_size(architecture, trunk, target):
  """(expert_size, parameters) of `architecture` nearest `target` parameters."""
  return nearest_size(lambda size: tagger_parameter_count(architecture, trunk, size), target,
                      4 * _output_size(trunk))


def measure_tagger(architectures, trunks, *, steps=20, rounds=6, batch_size=32, seq_len=36):
  """{(trunk, architecture, sizing, mode): {"ms", "compile_s", "params", "size"}}; sizing
  "default" or "matched" (hard sharing: "default" only)."""
  from mtlcore.benchmarks import throughput  # pylint: disable=g-import-not-at-top
  batches = throughput.synthetic_batches(8, batch_size, seq_len)
  out, trainers = {}, {}
  for trunk in trunks:
    target = tagger_parameter_count("hard", trunk)
    for a in architectures:
      sizings = {"default": (0, tagger_parameter_count(a, trunk))} if a == "hard" else {
          "default": (0, tagger_parameter_count(a, trunk)),
          "matched": tagger_matched_size(a, trunk, target)}
      for sizing, (size, params) in sizings.items():
        for mode in MODES:
          trainer = throughput.build_bench_trainer(
              tagger_config(a, trunk, mode, expert_size=size, batch_size=batch_size),
              lambda tasks: throughput.as_dataset(batches, tasks))
          start = time.perf_counter()
          warm_up(trainer, steps)
          key = (trunk, a, sizing, mode)
          trainers[key] = trainer
          shown = f"expert_size={size}" if size else f"expert_size={_output_size(trunk)} (default)"
          out[key] = {"compile_s": time.perf_counter() - start, "params": params,
                      "size": "-" if a == "hard" else shown}
  for key, ms in interleaved_rounds(trainers, steps, rounds).items():
    out[key]["ms"] = ms
  return out


def warm_up(trainer, steps, calls=2):
  """`calls` calls of max(steps, 20) steps: the compiled loop traces at the first, and each
  task's step compiles when it first runs (an alternating loop of 20 uniform steps runs both
  tasks but with probability 2^-19 of missing one)."""
  for _ in range(calls):
    trainer.train(max(steps, 20))


def _output_size(trunk):
  """The default expert_size: the trunk's output size."""
  from mtlcore.tagging.tagger import TaggerConfig  # pylint: disable=g-import-not-at-top
  return TaggerConfig(trunk=trunk).output_size


def tagger_table(results):
  """Markdown lines: per trunk, mode, architecture and sizing the size, parameters, median
  ms/step and the ratio to hard sharing."""
  median = {key: statistics.median(v["ms"]) for key, v in results.items()}
  lines = ["| trunk | mode | architecture | size | parameters | ms/step (median) | x hard | "
           "compile s |", "|---|---|---|---|---|---|---|---|"]
  for trunk, mode in dict.fromkeys((k[0], k[3]) for k in results):
    hard = median.get((trunk, "hard", "default", mode))
    for key in [k for k in results if (k[0], k[3]) == (trunk, mode)]:
      row = results[key]
      ratio = f"{median[key] / hard:.2f}" if hard else "-"
      lines.append(f"| {trunk} | {mode} | {key[1]} | {row['size']} | {row['params']:,} | "
                   f"{median[key]:.2f} | {ratio} | {row['compile_s']:.1f} |")
  return lines


def run_tagger(architectures, trunks, *, steps, rounds, batch_size, seq_len):
  device = hardware.describe_device()
  print(f"device: {device}")
  results = measure_tagger(architectures, trunks, steps=steps, rounds=rounds,
                           batch_size=batch_size, seq_len=seq_len)
  print(f"CoNLL-2000 tagger (CRF chunk head), synthetic batches of {batch_size} x {seq_len} "
        f"tokens, XLA, {rounds} interleaved rounds of {steps} steps per configuration")
  print("\n".join(tagger_table(results)))
  return 0


def run(architectures, task_counts, *, steps, rounds, batch_size):
  device = hardware.describe_device()
  print(f"device: {device}")
  results = measure(architectures, task_counts, steps=steps, rounds=rounds,
                    batch_size=batch_size)
  print(f"synthetic task set, {INPUT_DIM} inputs, hard sharing {HARD_HIDDEN} units, batch "
        f"{batch_size}, XLA, {rounds} interleaved rounds of {steps} steps per configuration")
  print("\n".join(table(results, architectures, task_counts)))
  return 0
