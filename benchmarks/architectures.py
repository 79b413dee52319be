"""mtl-bench --architectures: each trunk architecture's step against hard sharing at the same
parameter count.

  mtl-bench --architectures=hard,mmoe,cgc,ple,cross_stitch,mtan --task_counts=2,8

On the synthetic task set (mtlcore.synthetic; 100 Gaussian inputs), for each number of tasks K
(--task_counts, default 2) the hard-sharing trunk has `HARD_HIDDEN` units; every other
architecture gets the size (`expert_size` for moe, mmoe, cgc and ple, `hidden_size` for
cross_stitch and mtan) whose whole model's parameter count (trunk and heads) is nearest to
hard sharing's at that K, with the other sizes at the task set's defaults (8 experts; one
shared and one task expert per level; 2 levels; 2 layers). Each (K, architecture, mode)
trainer is built as mtl-train builds it (trainers.build), joint with `sum` and alternating
(uniform sampler), compiled with XLA and warmed up (compile time reported apart), then timed in
--head_to_head_rounds interleaved rounds of --steps steps, the order reversed every other
round. Prints per row the parameter count, the median ms per step and its ratio to hard
sharing in the same mode and K, with the device and CPU it ran on.
"""

import statistics

from mtlcore.benchmarks import hardware
from mtlcore.benchmarks.task_scaling import interleaved_rounds, warmed_trainer
from mtlcore.synthetic.task_set import SyntheticTaskSet
from mtlcore.trainers.config import RunConfig

INPUT_DIM = 100
HARD_HIDDEN = 256
MODES = ("joint", "alternate")
# The size each architecture is matched by.
SIZE_OPTION = {"moe": "expert_size", "mmoe": "expert_size", "cgc": "expert_size", "ple": "expert_size",
               "cross_stitch": "hidden_size", "mtan": "hidden_size", "hard": "hidden_size"}


def parameter_count(architecture, num_tasks, size):
  """Trainable parameters of the synthetic model (trunk and heads) with that size."""
  options = {"num_tasks": num_tasks, "input_dim": INPUT_DIM, "num_examples": 64,
             "architecture": architecture, SIZE_OPTION[architecture]: size}
  task_set = SyntheticTaskSet(options)
  model = task_set.build_model(list(task_set.task_names), seed=0, assets_dir=None)
  return sum(int(v.shape.num_elements()) for v in model.trainable_variables)


def matched_size(architecture, num_tasks, target):
  """The size of `architecture` whose parameter count is nearest `target` (bisection: the
  count grows with the size), and that count."""
  lo, hi = 1, 4 * HARD_HIDDEN
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if parameter_count(architecture, num_tasks, mid) < target:
      lo = mid
    else:
      hi = mid
  counts = {s: parameter_count(architecture, num_tasks, s) for s in (lo, hi)}
  size = min(counts, key=lambda s: abs(counts[s] - target))
  return size, counts[size]


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


def run(architectures, task_counts, *, steps, rounds, batch_size):
  device = hardware.describe_device()
  print(f"device: {device}")
  results = measure(architectures, task_counts, steps=steps, rounds=rounds,
                    batch_size=batch_size)
  print(f"synthetic task set, {INPUT_DIM} inputs, hard sharing {HARD_HIDDEN} units, batch "
        f"{batch_size}, XLA, {rounds} interleaved rounds of {steps} steps per configuration")
  print("\n".join(table(results, architectures, task_counts)))
  return 0
