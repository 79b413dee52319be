"""mtl-compiles: how many XLA programs alternating training compiles, and whether it retraces.

  mtl-compiles --data_dir=DIR             # CoNLL-2000 default tagger, real pipeline
  mtl-compiles --trunk=conv --epochs=1

The bucketed pipeline promises at most (tasks x buckets) XLA programs: one per task step and
batch shape, never a recompile or a retrace once every shape has been seen. This binary
measures it on the real training pipeline: it runs alternating XLA training for a warm-up of
`--epochs` passes per task and then as many steps again, and after each phase counts the XLA
modules compiled for each task's step function (XLA dumps one `before_optimizations` file per
compilation into --xla_dump_to, set here before the first compile), the step functions'
traces, and the distinct batch shapes each task was fed (replayed from its deterministic
stream). It fails unless compilations = shapes fed <= tasks x buckets and each step function
traced once. Rare buckets (the longest sentences) may first appear after the warm-up; that
costs one compilation then, which the last line reports.

XLA reads XLA_FLAGS once, at its first compilation, so `count_compiles` must run in a process
that has not compiled anything yet (the binary's own process, or a fresh subprocess).
"""

import collections
import json
import os
import re
import tempfile

from absl import flags

from mtlcore.data import conll2000, pipeline
from mtlcore.errors import ConfigError, MtlError
from mtlcore.networks import tagger
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from trainers import cli, task_sets
from trainers.alternating import AlternatingTrainer

FLAGS = flags.FLAGS
flags.DEFINE_string("data_dir", None, "CoNLL-2000 directory (default: $MTL_DATA_DIR, else the "
                    "download cache).")
flags.DEFINE_enum("trunk", "bilstm", list(tagger.TRUNKS), "Tagger trunk.")
flags.DEFINE_integer("batch_size", 32, "Sentences per batch.")
flags.DEFINE_float("epochs", 1.0, "Warm-up passes over the training data per task; the check "
                   "afterwards runs as many steps again.")
flags.DEFINE_integer("hidden_size", 128, "Trunk size (smaller compiles and trains faster; the "
                     "count does not depend on it).")
flags.DEFINE_list("buckets", [str(b) for b in pipeline.DEFAULT_BUCKETS],
                  "The pipeline's padded bucket lengths.")
flags.DEFINE_string("output_json", None, "Write the result here as JSON.")

_BEFORE = ".before_optimizations.txt"


def _module_counts(dump_dir):
  """{inference function name: number of XLA compilations} from the dump directory."""
  counts = collections.Counter()
  for name in os.listdir(dump_dir):
    if name.endswith(_BEFORE):
      match = re.match(r"module_\d+\.a_(inference_.+?_\d+)__", name)
      if match:
        counts[match.group(1)] += 1
  return counts


def _compiles_per_function(trainer, dump_dir):
  """{task: XLA compilations of that task's step function so far}."""
  modules = _module_counts(dump_dir)
  out = {}
  for task, fn in trainer.step_functions().items():
    # XLA names a module after the traced function: "__inference_NAME_ID" -> "a_inference_...".
    concrete = fn._list_all_concrete_functions()  # pylint: disable=protected-access
    names = {cf.name.decode().lstrip("_") for cf in concrete}
    out[task] = sum(modules.get(n, 0) for n in names)
  return out


def shapes_fed(dataset, batches):
  """The distinct word-id batch shapes among the first `batches` batches of `dataset`.

  The training streams are deterministic (seeded shuffles, ordered tf.data), so a fresh
  iterator replays exactly what the trainer's own iterator fed its step function.
  """
  return sorted({tuple(features["words"].shape) for features, _ in dataset.take(batches)})


def count_compiles(splits, *, config, batch_size, epochs, buckets=pipeline.DEFAULT_BUCKETS,
                   dump_dir=None, steps_per_loop=50):
  """Runs alternating XLA training and counts compilations, traces and batch shapes.

  Args:
    splits: mtlcore.data.conll2000.Splits.
    config: the TaggerConfig.
    batch_size: sentences per batch.
    epochs: warm-up length in passes per task; the check runs as many steps again.
    buckets: the pipeline's bucket lengths.
    dump_dir: where XLA dumps its modules (a new temporary directory by default).
  Returns:
    A dict with, after the warm-up and after the check: XLA compilations per task step
    function, traces per step function, and the distinct batch shapes each task was fed;
    and the verdicts `compiles_equal_shapes_fed` (never compiled twice for one shape),
    `at_most_tasks_x_buckets` and `no_retraces`.
  """
  dump_dir = dump_dir or tempfile.mkdtemp(prefix="mtl_xla_dump_")
  previous = os.environ.get("XLA_FLAGS", "")
  os.environ["XLA_FLAGS"] = f"{previous} --xla_dump_to={dump_dir}".strip()
  tasks = task_sets.CONLL_TASKS
  with tempfile.TemporaryDirectory() as model_dir:
    task_set = task_sets.build_conll2000(tasks=tasks, batch_size=batch_size, seed=0,
                                         model_dir=model_dir, splits=splits, config=config,
                                         buckets=buckets)
  trainer = AlternatingTrainer(
      model=task_set.model, tasks=task_set.tasks,
      optimizers={t: Adam(2e-3, name=f"adam_{t}") for t in tasks},
      datasets=task_set.task_datasets, sampler=TaskSampler(tasks, seed=0), seed=0,
      jit_compile=True, clip_norm=5.0)
  phase_steps = max(1, round(epochs * task_set.steps_per_epoch * len(tasks)))

  def phase():
    for done in range(0, phase_steps, steps_per_loop):
      trainer.train(min(steps_per_loop, phase_steps - done))
    fed = {t: shapes_fed(task_set.task_datasets[t], int(trainer.task_steps[t].numpy()))
           for t in tasks}
    return {"compiles": _compiles_per_function(trainer, dump_dir),
            "traces": trainer.step_trace_counts(),
            "shapes_fed": {t: [list(s) for s in fed[t]] for t in tasks},
            "steps": {t: int(trainer.task_steps[t].numpy()) for t in tasks}}

  warmup, check = phase(), phase()
  total = sum(check["compiles"].values())
  return {
      "tasks": list(tasks), "buckets": list(buckets), "steps_per_phase": phase_steps,
      "after_warmup": warmup, "after_check": check, "total_compiles": total,
      "tasks_x_buckets": len(tasks) * len(buckets), "dump_dir": dump_dir,
      "compiles_equal_shapes_fed": all(
          p["compiles"][t] == len(p["shapes_fed"][t]) for p in (warmup, check) for t in tasks),
      "at_most_tasks_x_buckets": total <= len(tasks) * len(buckets),
      "no_retraces": all(n == 1 for n in check["traces"].values()),
      "new_compiles_after_warmup": total - sum(warmup["compiles"].values()),
  }


def summary_lines(result):
  """Human-readable lines: the counts against tasks x buckets, and the verdicts."""
  warmup, check = result["after_warmup"], result["after_check"]
  per_task = ", ".join(f"{t} {n}" for t, n in check["compiles"].items())
  fed = ", ".join(f"{t} {len(s)}" for t, s in check["shapes_fed"].items())
  return [
      f"XLA compilations of the alternating step functions: {result['total_compiles']} "
      f"({per_task}); distinct batch shapes fed: {fed}; tasks x buckets = "
      f"{len(result['tasks'])} x {len(result['buckets'])} = {result['tasks_x_buckets']}.",
      f"One compilation per shape fed: {'yes' if result['compiles_equal_shapes_fed'] else 'NO'}."
      f" Traces per step function: {check['traces']}"
      f" ({'no retraces' if result['no_retraces'] else 'RETRACED'}).",
      f"Warm-up {result['steps_per_phase']} steps ({warmup['steps']}): "
      f"{sum(warmup['compiles'].values())} compilations; the next "
      f"{result['steps_per_phase']} steps: {result['new_compiles_after_warmup']} more.",
  ]


def run_binary():
  if FLAGS.batch_size <= 0 or FLAGS.hidden_size <= 0 or not FLAGS.epochs > 0:
    raise ConfigError("--batch_size, --hidden_size and --epochs must be positive.")
  try:
    buckets = pipeline.check_buckets([int(b) for b in FLAGS.buckets])
  except ValueError:
    raise ConfigError(f"--buckets must be integers, got {FLAGS.buckets}.") from None
  splits = conll2000.load_splits(FLAGS.data_dir)
  config = tagger.TaggerConfig(trunk=FLAGS.trunk, hidden_size=FLAGS.hidden_size)
  result = count_compiles(splits, config=config, batch_size=FLAGS.batch_size,
                          epochs=FLAGS.epochs, buckets=buckets)
  print("\n".join(summary_lines(result)))
  if FLAGS.output_json:
    with open(FLAGS.output_json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=2)
  if not (result["compiles_equal_shapes_fed"] and result["no_retraces"]
          and result["at_most_tasks_x_buckets"]):
    raise MtlError("Alternating training compiled or traced more than once per batch shape "
                   "(see above).")
  return result


def console_main():
  cli.run("mtl-compiles", run_binary)


if __name__ == "__main__":
  console_main()
