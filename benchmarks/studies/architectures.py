"""Task relatedness and the trunk: the MMoE paper's synthetic experiment (Ma et al. 2018, section
5.2), with the later architectures beside it.

  python3 -m mtlcore.benchmarks.studies.architectures --correlations=0.5,0.9,1.0 \
      --study_architectures=hard,moe,mmoe,cgc,ple,cross_stitch,mtan --study_seeds=0,1,2,3,4 \
      --write_results

Two regression tasks from the paper's generator (mtlcore.synthetic.data: 100 Gaussian inputs,
weight vectors of cosine p, ten sine terms, label noise) at each correlation p. Each seed
draws new data and a new initialisation (the paper repeats each run with new data). Every
architecture is sized to the parameter count of the paper's MMoE (8 experts of 16 units, a
gate per task, a linear tower per task: `--experts` and `--expert_size` of the task set's
defaults) by the size that mtl-bench --architectures matches (mtlcore.benchmarks.architectures).
Each run trains joint with the plain sum, Adam at --study_learning_rate, batch 64, for
--study_steps steps, and scores the mean of the two tasks' squared error on dev and on test
--study_points times. The runs are in-process (the engine's trainer and evaluation, as
mtl-train builds them, trainers.build): mtl-train scores only dev while it trains, and the
paper's figure is the loss against the steps.

Reports, per correlation and architecture, mean +- std over seeds of the final test loss and
the paper's comparison (each architecture's final loss over hard sharing's), which
architecture dev prefers per correlation (the final mean dev loss), and draws the test loss
against steps per correlation (mean over seeds) as an SVG beside RESULTS.md.
"""

import math
import statistics
import sys
import time

from absl import app
from absl import flags

# --write_results and --section: RESULTS.md's section architectures_synthetic and its SVG.
from mtlcore.benchmarks import report as _report_flags  # pylint: disable=unused-import
from mtlcore.choices import ARCHITECTURES

FLAGS = flags.FLAGS

SECTION = "architectures_synthetic"


def _mean_loss(metrics, tasks):
  return statistics.mean(metrics[f"{t}/loss"] for t in tasks)


def one_run(architecture, correlation, seed, *, size, steps, points, learning_rate):
  """{"steps": [..], "dev": [mean loss ..], "test": [..], "seconds": s} of one run."""
  from mtlcore.benchmarks.architectures import SIZE_OPTION  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import build  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  start = time.time()
  options = {"num_tasks": 2, "correlation": correlation, "architecture": architecture,
             "data_seed": seed, SIZE_OPTION[architecture]: size}
  config = RunConfig(task_set="synthetic", mode="joint", xla=True, seed=seed, batch_size=64,
                     learning_rate=learning_rate, train_steps=steps, options=options)
  run = build.in_process(config, total_steps=steps)
  config, task_set, data, model, trainer = (run.config, run.task_set, run.data, run.model,
                                            run.trainer)
  out = {"steps": [], "dev": [], "test": []}
  for i in range(points):
    trainer.train(steps // points)
    out["steps"].append((i + 1) * (steps // points))
    for split in ("dev", "test"):
      out[split].append(_mean_loss(task_set.evaluate(model, data, config.tasks, split),
                                   config.tasks))
  trainer.close()
  out["seconds"] = time.time() - start
  return out


def _mean_std(values):
  return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def report(runs, correlations, architectures, sizes):
  """Markdown lines from runs[(p, architecture)] = [one_run(...) per seed, in seed order].

  Each seed draws its own data, whose label scale varies, so the comparison with hard
  sharing is paired: per seed, the architecture's final test loss over hard sharing's on the
  same data, then mean +- std of those ratios."""
  lines = ["| p | architecture | size | parameters | final test loss (mean ± std) | "
           "test loss / hard's, same seed (mean ± std) | final dev loss (mean ± std) |",
           "|---|---|---|---|---|---|---|"]
  chosen = []
  for p in correlations:
    hard = [r["test"][-1] for r in runs[(p, "hard")]] if (p, "hard") in runs else None
    dev = {}
    for a in architectures:
      finals = [r["test"][-1] for r in runs[(p, a)]]
      test_mean, test_std = _mean_std(finals)
      dev[a], dev_std = _mean_std([r["dev"][-1] for r in runs[(p, a)]])
      ratio = "-"
      if hard:
        ratio = "{:.3f} ± {:.3f}".format(*_mean_std([x / h for x, h in zip(finals, hard)]))
      size, params = sizes[a]
      lines.append(f"| {p} | {a} | {size} | {params:,} | {test_mean:.4f} ± {test_std:.4f} | "
                   f"{ratio} | {dev[a]:.4f} ± {dev_std:.4f} |")
    best = min(dev, key=dev.get)
    chosen.append(f"- p = {p}: dev prefers **{best}** (final dev loss {dev[best]:.4f}).")
  return lines + [""] + chosen


def curves_svg(runs, correlations, architectures):
  """Test loss (log scale) against steps, one panel per correlation, a line per architecture
  (mean over seeds): a self-contained SVG string."""
  panel_w, height, margin = 320, 360, 50
  width = panel_w * len(correlations)
  colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
  means = {key: [statistics.mean(v) for v in zip(*(r["test"] for r in rs))]
           for key, rs in runs.items()}
  steps = next(iter(runs.values()))[0]["steps"]
  values = [v for m in means.values() for v in m]
  y_lo, y_hi = math.log10(min(values)), math.log10(max(values))
  y_span = max(y_hi - y_lo, 1e-9)
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>']
  for c, p in enumerate(correlations):
    left = c * panel_w + margin

    def xy(step, value, left=left):
      x = left + (step - steps[0]) / max(steps[-1] - steps[0], 1) * (panel_w - margin - 10)
      y = height - margin - (math.log10(value) - y_lo) / y_span * (height - 2 * margin)
      return x, y

    out += [f'<line x1="{left}" y1="{height - margin}" x2="{left + panel_w - margin - 10}" '
            f'y2="{height - margin}" stroke="black"/>',
            f'<line x1="{left}" y1="{margin}" x2="{left}" y2="{height - margin}" '
            f'stroke="black"/>',
            f'<text x="{left + (panel_w - margin) / 2}" y="{margin - 20}" '
            f'text-anchor="middle">correlation {p}</text>',
            f'<text x="{left + (panel_w - margin) / 2}" y="{height - 12}" '
            f'text-anchor="middle">training steps (to {steps[-1]})</text>']
    for frac in (0.0, 0.5, 1.0):
      value = 10 ** (y_lo + frac * y_span)
      _, py = xy(steps[0], value)
      out.append(f'<text x="{left - 4}" y="{py + 4:.1f}" text-anchor="end">{value:.3g}</text>')
    for i, a in enumerate(architectures):
      line = " ".join(f"{x:.1f},{y:.1f}" for x, y in
                      (xy(s, v) for s, v in zip(steps, means[(p, a)])))
      out.append(f'<polyline points="{line}" fill="none" stroke="{colours[i % 7]}" '
                 f'stroke-width="1.5"/>')
      if c == 0:
        out.append(f'<text x="{left + 150}" y="{margin + 14 * i}" '
                   f'fill="{colours[i % 7]}">{a}</text>')
  out.append('<text x="12" y="180" transform="rotate(-90 12 180)" text-anchor="middle">test '
             'loss, mean of the two tasks (log scale; mean over seeds)</text>')
  out.append("</svg>")
  return "\n".join(out) + "\n"


def main(argv):
  del argv
  from mtlcore.trainers.cli import common  # pylint: disable=g-import-not-at-top
  common.start_tensorflow()
  from mtlcore.benchmarks import architectures as sizing  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks import hardware  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks import results  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks.studies import runs as study_runs  # pylint: disable=g-import-not-at-top
  correlations = [float(p) for p in FLAGS.correlations]
  architectures, seeds = FLAGS.study_architectures, [int(s) for s in FLAGS.study_seeds]
  target = sizing.parameter_count("mmoe", 2, 16)
  sizes = {}
  for a in architectures:
    size, params = (16, target) if a == "mmoe" else sizing.matched_size(a, 2, target)
    sizes[a] = (f"{sizing.SIZE_OPTION[a]}={size}", params)
  device = hardware.describe_device()
  print(f"device: {device}", flush=True)
  runs = {}
  started = time.time()
  for p in correlations:
    for a in architectures:
      size = int(sizes[a][0].split("=")[1])
      runs[(p, a)] = []
      for seed in seeds:
        run = one_run(a, p, seed, size=size, steps=FLAGS.study_steps,
                      points=FLAGS.study_points, learning_rate=FLAGS.study_learning_rate)
        runs[(p, a)].append(run)
        print(f"p={p} {a} seed {seed}: test {run['test'][-1]:.4f} dev {run['dev'][-1]:.4f} "
              f"({run['seconds']:.1f} s)", file=sys.stderr, flush=True)
  if FLAGS.runs_json:
    import json  # pylint: disable=g-import-not-at-top
    with open(FLAGS.runs_json, "w", encoding="utf-8") as f:
      json.dump({f"{p}/{a}": rs for (p, a), rs in runs.items()}, f)
  lines = report(runs, correlations, architectures, sizes)
  header = ["## Task relatedness and the trunk: the MMoE paper's synthetic experiment", "",
            "`python3 -m mtlcore.benchmarks.studies.architectures " + " ".join(sys.argv[1:]) +
            "`", "", f"{len(seeds)} seeds, {FLAGS.study_steps} steps, Adam {FLAGS.study_learning_rate}, batch 64, "
            f"joint sum; parameters matched to MMoE's {target:,}; {device['name']}, "
            f"{time.time() - started:.0f} s in all; code {study_runs.code_version()}.", ""]
  text = "\n".join(header + lines)
  print(text)
  if FLAGS.write_results:
    section = FLAGS.section or SECTION
    results.replace_section_with_figure(
        section, text, curves_svg(runs, correlations, architectures), "test loss against steps")
  return 0


def _define_flags():
  """The study's own flags, defined when it runs as a binary (importing the module, as the
  tests do beside the other studies, defines none)."""
  flags.DEFINE_list("correlations", ["0.5", "0.9", "1.0"], "Task correlations p.")
  flags.DEFINE_list("study_architectures", list(ARCHITECTURES),
                    "Synthetic --architecture values to compare.")
  flags.DEFINE_list("study_seeds", ["0", "1", "2", "3", "4"], "Seeds (data and model).")
  flags.DEFINE_integer("study_steps", 4000, "Training steps per run.")
  flags.DEFINE_integer("study_points", 10, "Evaluations per run (every study_steps / "
                       "study_points steps).")
  flags.DEFINE_float("study_learning_rate", 1e-3, "Adam's learning rate.")
  flags.DEFINE_string("runs_json", None, "Also write every run's curves here.")


def console_main():
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  console_main()
