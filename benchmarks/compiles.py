"""mtl-compiles: how many XLA programs alternating training compiles, and whether it retraces.

  mtl-compiles --data_dir=DIR             # CoNLL-2000 default tagger, real pipeline
  mtl-compiles --trunk=conv --epochs=1    # any mtl-train flag; --epochs is the warm-up

The bucketed pipeline promises at most (tasks x buckets) XLA programs: one per task step and
batch shape, never a recompile or a retrace once every shape has been seen. This binary
measures it on the real training pipeline, with the trainer mtl-train builds for the same
flags (mtlcore.trainers.build): it runs alternating XLA training for a warm-up of
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
import dataclasses
import os
import re
import tempfile

from absl import flags

from mtlcore.benchmarks import cli, report
from mtlcore.errors import MtlError
from mtlcore.trainers import build

FLAGS = flags.FLAGS

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


def count_compiles(config, *, epochs, dump_dir=None):
  """Runs alternating XLA training as mtl-train builds it and counts compilations, traces
  and batch shapes.

  Args:
    config: a RunConfig (its mode is made "alternate" and its xla True).
    epochs: warm-up length in passes per task; the check runs as many steps again.
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
  resolved = build.resolve(dataclasses.replace(config, mode="alternate", xla=True))
  config, task_set = resolved.config, resolved.task_set
  data = task_set.load_data(config.data_dir)
  with tempfile.TemporaryDirectory() as assets_dir:
    model, tasks = build.build_model(config, task_set, assets_dir=assets_dir, data=data)
  streams = build.make_streams(config, task_set, data)
  phase_steps = max(1, round(epochs * sum(s.steps_per_epoch for s in streams.values())))
  trainer = build.build_trainer(config, model=model, tasks=tasks, streams=streams,
                                total_steps=2 * phase_steps)
  names = config.tasks
  buckets = config.options["buckets"]

  def phase():
    for done in range(0, phase_steps, config.steps_per_loop):
      trainer.train(min(config.steps_per_loop, phase_steps - done))
    fed = {t: shapes_fed(streams[t].make_dataset(0), int(trainer.task_steps[t].numpy())) for t in names}
    return {"compiles": _compiles_per_function(trainer, dump_dir),
            "traces": trainer.step_trace_counts(),
            "shapes_fed": {t: [list(s) for s in fed[t]] for t in names},
            "steps": {t: int(trainer.task_steps[t].numpy()) for t in names}}

  warmup, check = phase(), phase()
  total = sum(check["compiles"].values())
  return {
      "tasks": list(names), "buckets": list(buckets), "steps_per_phase": phase_steps,
      "after_warmup": warmup, "after_check": check, "total_compiles": total,
      "tasks_x_buckets": len(names) * len(buckets), "dump_dir": dump_dir,
      "compiles_equal_shapes_fed": all(
          p["compiles"][t] == len(p["shapes_fed"][t]) for p in (warmup, check) for t in names),
      "at_most_tasks_x_buckets": total <= len(names) * len(buckets),
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


def main(config):
  """Counts, prints and checks the compilations of `config`'s alternating training (a
  conll2000 RunConfig, as mtl-train's flags give it); raises MtlError when the pipeline's
  promise does not hold."""
  result = count_compiles(config, epochs=FLAGS.epochs or 1.0)
  print("\n".join(summary_lines(result)))
  if FLAGS.output_json:
    report.write_json(FLAGS.output_json, result)
  if not (result["compiles_equal_shapes_fed"] and result["no_retraces"]
          and result["at_most_tasks_x_buckets"]):
    raise MtlError("Alternating training compiled or traced more than once per batch shape "
                   "(see above).")
  return result


def console_main():
  cli.compiles_main()


if __name__ == "__main__":
  console_main()
