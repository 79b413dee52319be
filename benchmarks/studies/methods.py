"""The weighting methods on the synthetic benchmark: test loss per task and Delta_m against
single-task models, at two task correlations (the methods issue's screen).

  python3 -m mtlcore.benchmarks.studies.methods --correlations=0.5,0.9 \
      --study_seeds=0,1,2,3,4 --write_results --runs_json=/tmp/methods_runs.json

K regression tasks from the synthetic task set (mtlcore.synthetic.data: the MMoE paper's
generator, weight vectors of cosine p with t0's and p^2 with each other's) on the task set's
hard-shared trunk (one shared ReLU layer of --hidden_size units, a linear head per task).
Each seed draws new data and a new initialisation. For every (p, seed):
- each method of --study_weightings trains all K tasks jointly (`mtl-train --mode=joint
  --weighting=NAME`, its defaults), --study_steps steps, Adam at the task set's 1e-3, batch
  64;
- each task alone trains the same network (`--tasks=tK`), the same steps: the single-task
  reference R_k.
Scored at the end on dev and on test: each task's mean squared error M_k, and Delta_m =
100 / K x sum_k (R_k - M_k) / R_k, the mean relative gain over the single-task models (higher
is better; positive: the joint model beats training each task alone), per seed against the
same seed's single-task models, then mean +- std over seeds. Dev's Delta_m ranks the methods
(the three it prefers go to the CoNLL-2000 study); test's is reported.

The runs are in-process (the engine's trainer and evaluation as mtl-train builds them,
trainers.build.in_process). Time per step: the wall time of the steps after the first
--study_steps / 10 (which include the compile), per step, median over seeds; it is this
study's, not a head-to-head benchmark (mtl-bench --weightings is).

Every run compiles its own XLA programs, and the process keeps them mapped: on this machine
(vm.max_map_count 65,530) the 231st run of one invocation failed with "LLVM compilation
error: Cannot allocate memory". --runs_json keeps every finished run, so the screen resumes
in a new process where it stopped.
"""

import statistics
import sys
import time

from absl import app
from absl import flags

from mtlcore.benchmarks import report as _report_flags  # pylint: disable=unused-import
from mtlcore.choices import WEIGHTINGS

FLAGS = flags.FLAGS

SECTION = "methods_synthetic"
SINGLE = "single-task"  # The runs' key for the single-task references.


def one_run(weighting, correlation, seed, *, num_tasks, tasks, steps, hidden_size):
  """{"dev": {task: mse}, "test": {task: mse}, "ms_per_step": ms, "seconds": s} of one run
  of `tasks` (all K, or one for a single-task reference) trained jointly with `weighting`."""
  from mtlcore.trainers import build  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  start = time.time()
  options = {"num_tasks": num_tasks, "correlation": correlation, "data_seed": seed,
             "hidden_size": hidden_size}
  config = RunConfig(task_set="synthetic", mode="joint", xla=True, seed=seed, batch_size=64,
                     train_steps=steps, weighting=weighting, tasks=tuple(tasks),
                     options=options)
  run = build.in_process(config, total_steps=steps)
  first = max(steps // 10, 1)
  run.trainer.train(first)  # Includes the compile.
  timed = time.time()
  run.trainer.train(steps - first)
  ms_per_step = (time.time() - timed) / (steps - first) * 1000
  out = {"ms_per_step": ms_per_step}
  for split in ("dev", "test"):
    metrics = run.task_set.evaluate(run.model, run.data, run.config.tasks, split)
    out[split] = {t: float(metrics[f"{t}/loss"]) for t in run.config.tasks}
  run.trainer.close()
  out["seconds"] = time.time() - start
  return out


def delta_m(losses, references):
  """100 / K x sum_k (R_k - M_k) / R_k over the tasks of `references` ({task: R_k}), from
  `losses` ({task: M_k}); lower losses are better, so a positive value is a gain."""
  return 100.0 * statistics.mean((references[t] - losses[t]) / references[t]
                                 for t in references)


def _mean_std(values):
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary(runs, correlations, weightings, seeds, tasks):
  """{(p, method): {"dev": (mean, std), "test": (mean, std), "paired": (mean, std),
  "losses": {task: mean test mse}, "ms": median ms per step}} of Delta_m per seed against
  that seed's single-task runs (runs[(p, SINGLE, seed)] = {task: one_run};
  runs[(p, method, seed)] = one_run); "paired": the test Delta_m minus `sum`'s on the same
  seed (None without `sum`): each seed draws its own data, which moves every method's
  Delta_m together, so the paired difference is what compares a method with `sum`."""
  out = {}
  for p in correlations:
    references = {split: [{t: runs[(p, SINGLE, s)][t][split][t] for t in tasks}
                          for s in seeds] for split in ("dev", "test")}
    for w in weightings:
      per_seed = [runs[(p, w, s)] for s in seeds]
      out[(p, w)] = {
          split: _mean_std([delta_m(r[split], ref)
                            for r, ref in zip(per_seed, references[split])])
          for split in ("dev", "test")}
      out[(p, w)]["losses"] = {t: statistics.mean(r["test"][t] for r in per_seed)
                               for t in tasks}
      out[(p, w)]["per_seed"] = [delta_m(r["test"], ref)
                                 for r, ref in zip(per_seed, references["test"])]
      out[(p, w)]["ms"] = statistics.median(r["ms_per_step"] for r in per_seed)
    for w in weightings:
      paired = None
      if (p, "sum") in out:
        paired = _mean_std([a - b for a, b in zip(out[(p, w)]["per_seed"],
                                                  out[(p, "sum")]["per_seed"])])
      out[(p, w)]["paired"] = paired
  return out


def report(table, correlations, weightings, tasks, *, preferred=3):
  """Markdown lines: per correlation, every method's Delta_m (test and dev, mean +- std) and
  mean test loss per task, ranked by dev's Delta_m; then the `preferred` methods dev ranks
  highest over both correlations (mean of the two dev Delta_m)."""
  lines = []
  for p in correlations:
    lines += [f"Correlation p = {p}, ranked by dev Delta_m:", "",
              "| rank | method | test Δm % (mean ± std) | test Δm − sum's, same seed | "
              "dev Δm % (mean ± std) | " +
              " | ".join(f"{t} test MSE" for t in tasks) + " | ms/step |",
              "|---|---|---|---|---|" + "---|" * len(tasks) + "---|"]
    ranked = sorted(weightings, key=lambda w: -table[(p, w)]["dev"][0])
    for rank, w in enumerate(ranked, 1):
      row = table[(p, w)]
      paired = ("-" if row["paired"] is None
                else "{:+.2f} ± {:.2f}".format(*row["paired"]))
      lines.append(f"| {rank} | {w} | {row['test'][0]:+.2f} ± {row['test'][1]:.2f} | "
                   f"{paired} | {row['dev'][0]:+.2f} ± {row['dev'][1]:.2f} | " +
                   " | ".join(f"{row['losses'][t]:.4f}" for t in tasks) +
                   f" | {row['ms']:.2f} |")
    lines.append("")
  overall = {w: statistics.mean(table[(p, w)]["dev"][0] for p in correlations)
             for w in weightings}
  best = sorted((w for w in weightings if w != "sum"), key=lambda w: -overall[w])[:preferred]
  lines.append(f"Dev prefers, over both correlations (mean dev Δm): " +
               ", ".join(f"**{w}** ({overall[w]:+.2f})" for w in best) +
               f"; `sum`: {overall['sum']:+.2f}." if "sum" in overall else "")
  return lines


def bars_svg(table, correlations, weightings):
  """Test Delta_m (mean +- std over seeds) per method, one panel per correlation, the methods
  in the order of `weightings`: a self-contained SVG string."""
  row_h, top, label_w, panel_w = 16, 40, 95, 300
  height = top + row_h * len(weightings) + 40
  width = label_w + panel_w * len(correlations) + 20
  values = [table[(p, w)]["test"][0] + s * table[(p, w)]["test"][1]
            for p in correlations for w in weightings for s in (-1, 1)]
  lo, hi = min(min(values), 0.0), max(max(values), 0.0)
  span = max(hi - lo, 1e-9)
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>']
  for i, w in enumerate(weightings):
    out.append(f'<text x="{label_w - 6}" y="{top + row_h * i + 12}" '
               f'text-anchor="end">{w}</text>')
  for c, p in enumerate(correlations):
    left = label_w + c * panel_w

    def x_of(value, left=left):
      return left + 10 + (value - lo) / span * (panel_w - 30)

    zero = x_of(0.0)
    out += [f'<text x="{left + panel_w / 2}" y="{top - 22}" text-anchor="middle">'
            f'correlation {p}</text>',
            f'<line x1="{zero:.1f}" y1="{top - 4}" x2="{zero:.1f}" '
            f'y2="{top + row_h * len(weightings)}" stroke="black"/>']
    for tick in (lo, 0.0, hi):
      out.append(f'<text x="{x_of(tick):.1f}" y="{top + row_h * len(weightings) + 14}" '
                 f'text-anchor="middle">{tick:+.1f}</text>')
    for i, w in enumerate(weightings):
      mean, std = table[(p, w)]["test"]
      y = top + row_h * i + 3
      colour = "#2ca02c" if mean >= 0 else "#d62728"
      out += [f'<rect x="{min(zero, x_of(mean)):.1f}" y="{y}" '
              f'width="{abs(x_of(mean) - zero):.1f}" height="{row_h - 6}" fill="{colour}"/>',
              f'<line x1="{x_of(mean - std):.1f}" y1="{y + (row_h - 6) / 2}" '
              f'x2="{x_of(mean + std):.1f}" y2="{y + (row_h - 6) / 2}" stroke="black"/>']
  out.append(f'<text x="{label_w + panel_w * len(correlations) / 2}" y="{height - 6}" '
             'text-anchor="middle">test Δm % against single-task models (mean ± std over '
             'seeds; higher is better)</text>')
  out.append("</svg>")
  return "\n".join(out) + "\n"


def main(argv):
  del argv
  from mtlcore.trainers.cli import common  # pylint: disable=g-import-not-at-top
  common.start_tensorflow()
  from mtlcore.benchmarks import hardware  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks import results  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks.studies import runs as study_runs  # pylint: disable=g-import-not-at-top
  correlations = [float(p) for p in FLAGS.correlations]
  weightings, seeds = FLAGS.study_weightings, [int(s) for s in FLAGS.study_seeds]
  unknown = [w for w in weightings if w not in WEIGHTINGS]
  if unknown:
    raise app.UsageError(f"--study_weightings: unknown method(s) {', '.join(unknown)}.")
  k = FLAGS.study_tasks
  tasks = [f"t{i}" for i in range(k)]
  device = hardware.describe_device()
  print(f"device: {device}", flush=True)
  saved = study_runs.SavedRuns(FLAGS.runs_json)  # Resumes an interrupted screen.
  started = time.time()

  common_args = {"num_tasks": k, "steps": FLAGS.study_steps,
                 "hidden_size": FLAGS.study_hidden_size}
  runs = {}
  for p in correlations:
    for seed in seeds:
      runs[(p, SINGLE, seed)] = {
          t: saved.get(f"{p}/{SINGLE}/{t}/{seed}",
                       lambda t=t: one_run("sum", p, seed, tasks=[t], **common_args))
          for t in tasks}
      for w in weightings:
        run = saved.get(f"{p}/{w}/{seed}",
                        lambda w=w: one_run(w, p, seed, tasks=tasks, **common_args))
        runs[(p, w, seed)] = run
        print(f"p={p} seed {seed} {w}: test {statistics.mean(run['test'].values()):.4f} "
              f"({run['seconds']:.1f} s)", file=sys.stderr, flush=True)
  trained = sum(r["seconds"] for key, r in runs.items() if key[1] != SINGLE) + sum(
      r["seconds"] for key, rs in runs.items() if key[1] == SINGLE for r in rs.values())
  table = summary(runs, correlations, weightings, seeds, tasks)
  lines = report(table, correlations, weightings, tasks)
  header = ["## The weighting methods on the synthetic benchmark (Delta_m against single-task "
            "models)", "",
            "`python3 -m mtlcore.benchmarks.studies.methods " + " ".join(sys.argv[1:]) + "`",
            "", f"{k} tasks, {len(seeds)} seeds, {FLAGS.study_steps} steps, hard sharing "
            f"(a shared ReLU layer of {FLAGS.study_hidden_size}), Adam 1e-3, batch 64, each "
            f"method with its defaults; {device['name']}; the runs took {trained:.0f} s in "
            f"all ({time.time() - started:.0f} s in this invocation); code "
            f"{study_runs.code_version()}.", ""]
  text = "\n".join(header + lines)
  print(text)
  if FLAGS.write_results:
    section = FLAGS.section or SECTION
    results.replace_section_with_figure(section, text, bars_svg(table, correlations, weightings),
                                        "test Delta_m per method")
  return 0


def _define_flags():
  """The study's own flags, defined when it runs as a binary (importing the module, as the
  tests do, defines none)."""
  flags.DEFINE_list("correlations", ["0.5", "0.9"], "Task correlations p.")
  flags.DEFINE_list("study_weightings", [w for w in WEIGHTINGS if w != "static"],
                    "--weighting values to compare (static with no weights is sum).")
  flags.DEFINE_list("study_seeds", ["0", "1", "2", "3", "4"], "Seeds (data and model).")
  flags.DEFINE_integer("study_tasks", 4, "K, the synthetic tasks.")
  flags.DEFINE_integer("study_steps", 3000, "Training steps per run.")
  flags.DEFINE_integer("study_hidden_size", 32, "Units of the shared ReLU layer.")
  flags.DEFINE_string("runs_json", None, "Every run's scores: read first (an interrupted "
                      "screen resumes) and written after each run.")


def console_main():
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  console_main()
