"""The two-objective toy landscape of the CAGrad paper (Liu et al. 2021; also in Nash-MTL and
FAMO): every weighting method's trajectory from the five starting points of Nash-MTL's code,
through the engine's joint step.

  python3 -m mtlcore.benchmarks.studies.landscape --write_results

The problem, over a point x = (x1, x2) (the papers' `Toy`, with scale 1):
  f_k = c1(x2) g_k(x) + c2(x2) q_k(x), c1 = max(tanh(x2 / 2), 0), c2 = max(tanh(-x2 / 2), 0),
  g_1 = log max(|(-x1 - 7) / 2 - tanh(-x2)|, 5e-6) + 6,
  g_2 = log max(|(-x1 + 3) / 2 + tanh(-x2) + 2|, 5e-6) + 6,
  q_1 = ((x1 - 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20, q_2 = ((x1 + 7)^2 + 0.1 (x2 + 8)^2) / 10 - 20.
Its Pareto front, as the papers draw it, is the image of x2 = -8.3552, x1 in [-7, 7]. Each
task's loss is f_k + 21 (SHIFT): f_k >= -20, and the methods that take logarithms or ratios
of the losses (gls, db_mtl, stch, famo, imtl_l, dwa) need them positive; FAMO's toy code
shifts them too. A shift changes no gradient, so sum and the gradient methods see the
papers' problem.

Each run is the engine's JointTrainer on a model whose trunk is the point (a tf.Module with
one [2] variable; the "representation" every head reads) and whose two heads compute f_1 and
f_2 (no variables), one-example batches, the method with its defaults, Adam at 1e-3 (the
papers' code), 100,000 steps (the CAGrad paper's code, whose unscaled landscape this is;
Nash-MTL's, which scales f_1 by 0.1, runs 35,000), compiled with XLA. A method's own variables
(uncertainty's log-variances, imtl_l's scales) are trained by the same Adam, as the trainer
trains them. dwa's period and stch's epoch, counted in steps, are --landscape_period steps.
The point is read every --landscape_every steps for the trajectory.

Reached the front: the final losses lie within --front_tolerance of the front's curve (in
loss space, the distance to the nearest of 2,001 points on it). Also reported: the final
losses and the norm of the min-norm point of the two gradients' convex hull (0 at a
Pareto-stationary point).
"""

import math
import re
import sys
import time

from absl import app
from absl import flags

from mtlcore.benchmarks import report as _report_flags  # pylint: disable=unused-import
from mtlcore.choices import WEIGHTINGS

FLAGS = flags.FLAGS

SECTION = "landscape"
SHIFT = 21.0  # Added to each f_k: every loss >= 1.
LOWER = 5e-6  # The papers' clamp inside the logarithms.
FRONT_X2 = -8.3552  # The papers' Pareto front: x2 at this value, x1 in [-7, 7].
STARTS = ((-8.5, 7.5), (0.0, 0.0), (9.0, 9.0), (-7.5, -0.5), (9.0, -1.0))  # Nash-MTL's.
TASKS = ("f1", "f2")


def objectives(xp, x1, x2):
  """(f_1, f_2) at points (x1, x2), arrays of one shape, in the array module `xp` (numpy or
  tf.math-like: needs abs, log, maximum, tanh)."""
  tanh = xp.tanh
  g1 = xp.log(xp.maximum(abs(0.5 * (-x1 - 7.0) - tanh(-x2)), LOWER)) + 6.0
  g2 = xp.log(xp.maximum(abs(0.5 * (-x1 + 3.0) + tanh(-x2) + 2.0), LOWER)) + 6.0
  c1 = xp.maximum(tanh(x2 * 0.5), 0.0)
  q1 = ((-x1 + 7.0) ** 2 + 0.1 * (-x2 - 8.0) ** 2) / 10.0 - 20.0
  q2 = ((-x1 - 7.0) ** 2 + 0.1 * (-x2 - 8.0) ** 2) / 10.0 - 20.0
  c2 = xp.maximum(tanh(-x2 * 0.5), 0.0)
  return g1 * c1 + q1 * c2, g2 * c1 + q2 * c2


def front(num=2001):
  """float64 [num, 2]: the Pareto front's losses (f_1, f_2), unshifted."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  x1 = np.linspace(-7.0, 7.0, num)
  return np.stack(objectives(np, x1, np.full_like(x1, FRONT_X2)), axis=1)


def distance_to_front(losses, curve):
  """Euclidean distance in loss space from `losses` (f_1, f_2) to the nearest point of
  `curve` ([N, 2], front())."""
  return float(min(math.hypot(a - losses[0], b - losses[1]) for a, b in curve))


def min_norm_of_hull(g1, g2):
  """|| argmin over the segment [g1, g2] of ||v|| ||: 0 where the point is Pareto-stationary
  (MGDA's two-task closed form)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  diff = g1 - g2
  denominator = float(diff @ diff)
  t = 0.5 if denominator == 0 else min(max(float((g2 - g1) @ g2) / denominator, 0.0), 1.0)
  return float(np.linalg.norm(t * g1 + (1 - t) * g2))


def _model(start):
  """The engine's MultiTaskModel: a trunk that is the point, two heads computing f_k."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtlcore.model import (MultiTaskModel, SharedTrunk,  # pylint: disable=g-import-not-at-top
                             TaskHead)

  class Point(SharedTrunk):
    """The trainable point x [2], given to the heads as [B, 2] (B copies)."""

    output_sizes = {"point": 2}

    def __init__(self):
      super().__init__(name="trunk")
      self.point = tf.Variable(tf.constant(start, tf.float32), name="point")

    def __call__(self, features, *, training, seed):
      rows = tf.shape(features["x"])[0]
      return {"point": tf.tile(self.point[None], [rows, 1])}

  class Objective(TaskHead):
    """f_k of each row of the point [B, 2] -> [B]."""

    def __init__(self, index):
      super().__init__(reads="point", name=f"f{index + 1}_head")
      self.index = index

    def __call__(self, representation, features, *, training, seed):
      return objectives(tf.math, representation[:, 0], representation[:, 1])[self.index]

  return MultiTaskModel(Point(), {t: Objective(k) for k, t in enumerate(TASKS)},
                        name="landscape")


def one_run(method, start, *, steps, every, period):
  """{"trajectory": [[x1, x2], ...] every `every` steps from the start, "losses": final
  (f_1, f_2), "hull": min_norm_of_hull at the end, "seconds", "stopped": None, or the
  engine's one-line error where a non-finite step stopped the run (the trajectory and losses
  are then where it stopped)} of `method` from `start`."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from mtlcore.errors import NonFiniteError  # pylint: disable=g-import-not-at-top
  from mtlcore.optimizers import Adam  # pylint: disable=g-import-not-at-top
  from mtlcore.tasks import Ratio, Task  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.joint import JointTrainer  # pylint: disable=g-import-not-at-top
  from mtlcore.weighting import make_weighting  # pylint: disable=g-import-not-at-top
  started = time.time()
  model = _model(start)

  def loss(labels, predictions, features):
    del labels, features
    return Ratio(tf.reduce_sum(predictions + SHIFT), tf.cast(tf.size(predictions), tf.float32))

  weighting = make_weighting(method, TASKS, period=period)
  # One example per sample the method takes (sdmgrad, modo: 3 identical rows, one in each
  # part of the batch; the problem has no noise, so its samples are equal).
  rows = weighting.samples
  batch = ({"x": tf.zeros([rows, 1])}, {t: tf.zeros([rows]) for t in TASKS})
  trainer = JointTrainer(
      model=model, tasks=[Task(t, loss) for t in TASKS], optimizer=Adam(1e-3, name="adam"),
      dataset=lambda start: tf.data.Dataset.from_tensors(batch).repeat(),
      weighting=weighting, seed=0, jit_compile=True)
  trajectory, stopped = [list(start)], None
  for _ in range(steps // every):
    try:
      trainer.train(every)
    except NonFiniteError as e:
      stopped = str(e)
      break
    trajectory.append(model.trunk.point.numpy().astype(float).tolist())
  trainer.close()
  x = tf.Variable(model.trunk.point)
  with tf.GradientTape(persistent=True) as tape:
    f1, f2 = objectives(tf.math, x[0], x[1])
  g1, g2 = tape.gradient(f1, x).numpy(), tape.gradient(f2, x).numpy()
  return {"trajectory": trajectory, "losses": [float(f1), float(f2)],
          "hull": min_norm_of_hull(g1.astype(np.float64), g2.astype(np.float64)),
          "seconds": time.time() - started, "stopped": stopped}


def report(runs, methods, *, tolerance):
  """Markdown lines: per method, which starts reached the front, the final losses and the
  hull norm per start; runs[(method, start index)] = one_run(...)."""
  curve = front()
  lines = ["| method | starts that reach the front | " +
           " | ".join(f"from ({a:g}, {b:g}): final (f1, f2), distance, hull norm"
                      for a, b in STARTS) + " |",
           "|---|---|" + "---|" * len(STARTS)]
  reached = {}
  for m in methods:
    cells, hits = [], 0
    for i in range(len(STARTS)):
      run = runs[(m, i)]
      if run.get("stopped"):
        step = re.search(r"global step (\d+)", run["stopped"])
        cells.append(f"stopped by a non-finite step at step {step.group(1) if step else '?'}")
        continue
      d = distance_to_front(run["losses"], curve)
      hits += d <= tolerance
      cells.append(f"({run['losses'][0]:.2f}, {run['losses'][1]:.2f}), {d:.3f}, "
                   f"{run['hull']:.3f}")
    reached[m] = hits
    lines.append(f"| {m} | {hits} of {len(STARTS)} | " + " | ".join(cells) + " |")
  return lines, reached


def trajectories_svg(runs, methods):
  """One small panel per method: the five trajectories in the (x1, x2) plane, x1 and x2 in
  [-10, 10], over the landscape shaded by bands of f_1 + f_2 (drawn once, reused by every
  panel), the front as a grey segment, the starts as black dots, the ends as red ones: a
  self-contained SVG string."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  cols, size, pad, cells = 5, 170, 22, 25
  rows = math.ceil(len(methods) / cols)
  width, height = cols * (size + pad) + pad, rows * (size + pad + 14) + pad
  lo, hi = -10.0, 10.0

  def xy(px, py):  # Within a panel.
    return (px - lo) / (hi - lo) * size, (hi - py) / (hi - lo) * size

  grid = np.linspace(lo, hi, cells + 1)
  centres = (grid[:-1] + grid[1:]) / 2
  gx, gy = np.meshgrid(centres, centres)
  total = sum(objectives(np, gx, gy))
  levels = np.quantile(total, np.linspace(0.1, 0.9, 9))
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" '
         f'xmlns:xlink="http://www.w3.org/1999/xlink" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="11">',
         f'<rect width="{width}" height="{height}" fill="white"/>', '<defs><g id="landscape">']
  step = size / cells
  for i in range(cells):
    for j in range(cells):
      shade = 240 - 11 * int(np.searchsorted(levels, total[i, j]))
      px, py = xy(grid[j], grid[i + 1])
      out.append(f'<rect x="{px:.1f}" y="{py:.1f}" width="{step + 0.3:.1f}" '
                 f'height="{step + 0.3:.1f}" fill="rgb({shade},{shade},{shade + 12})"/>')
  (ax, ay), (bx, by) = xy(-7.0, FRONT_X2), xy(7.0, FRONT_X2)
  out += [f'<line x1="{ax:.1f}" y1="{ay:.1f}" x2="{bx:.1f}" y2="{by:.1f}" stroke="#555" '
          f'stroke-width="4" opacity="0.6"/>',
          f'<rect width="{size}" height="{size}" fill="none" stroke="#999"/>', '</g></defs>']
  colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"]
  for n, m in enumerate(methods):
    left = pad + (n % cols) * (size + pad)
    top = pad + 14 + (n // cols) * (size + pad + 14)
    out += [f'<text x="{left + size / 2}" y="{top - 4}" text-anchor="middle">{m}</text>',
            f'<g transform="translate({left},{top})">',
            '<use xlink:href="#landscape" href="#landscape"/>']
    for i in range(len(STARTS)):
      trajectory = runs[(m, i)]["trajectory"]
      every = max(1, len(trajectory) // 100)  # At most ~100 points a line.
      points = [xy(max(lo, min(hi, a)), max(lo, min(hi, b)))
                for a, b in trajectory[::every] + trajectory[-1:]]
      line = " ".join(f"{a:.1f},{b:.1f}" for a, b in points)
      out += [f'<polyline points="{line}" fill="none" stroke="{colours[i]}" '
              f'stroke-width="1.5"/>',
              f'<circle cx="{points[0][0]:.1f}" cy="{points[0][1]:.1f}" r="2.5" fill="black"/>',
              f'<circle cx="{points[-1][0]:.1f}" cy="{points[-1][1]:.1f}" r="2.5" '
              f'fill="#d62728"/>']
    out.append("</g>")
  out.append("</svg>")
  return "\n".join(out) + "\n"


def main(argv):
  del argv
  from mtlcore.trainers.cli import common  # pylint: disable=g-import-not-at-top
  common.start_tensorflow()
  from mtlcore.benchmarks import hardware  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks import results  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks.studies import runs as study_runs  # pylint: disable=g-import-not-at-top
  methods = FLAGS.landscape_weightings
  unknown = [m for m in methods if m not in WEIGHTINGS]
  if unknown:
    raise app.UsageError(f"--landscape_weightings: unknown method(s) {', '.join(unknown)}.")
  device = hardware.describe_device()
  started = time.time()
  saved = study_runs.SavedRuns(FLAGS.runs_json)  # Resumes an interrupted study.
  runs = {}
  for m in methods:
    for i, start in enumerate(STARTS):
      runs[(m, i)] = saved.get(
          f"{m}/{i}/{FLAGS.landscape_steps}",
          lambda m=m, start=start: one_run(m, start, steps=FLAGS.landscape_steps,
                                           every=FLAGS.landscape_every,
                                           period=FLAGS.landscape_period))
      print(f"{m} from {start}: losses {runs[(m, i)]['losses']} "
            f"({runs[(m, i)]['seconds']:.1f} s)", file=sys.stderr, flush=True)
  trained = sum(r["seconds"] for r in runs.values())
  lines, reached = report(runs, methods, tolerance=FLAGS.front_tolerance)
  header = ["## The CAGrad toy landscape: every method's trajectories", "",
            "`python3 -m mtlcore.benchmarks.studies.landscape " + " ".join(sys.argv[1:]) +
            "`", "", f"{FLAGS.landscape_steps} steps of Adam 1e-3 from each of Nash-MTL's "
            f"five starts, the engine's joint step with each method's defaults; losses f_k + "
            f"{SHIFT:g}; reached: final losses within {FLAGS.front_tolerance} of the front; "
            f"{device['name']}; the runs took {trained:.0f} s ({time.time() - started:.0f} s "
            f"in this invocation); code "
            f"{study_runs.code_version()}.", ""]
  all_five = [m for m in methods if reached[m] == len(STARTS)]
  summary = [f"Every start reaches the front with: {', '.join(all_five) or 'no method'}."]
  text = "\n".join(header + lines + [""] + summary)
  print(text)
  if FLAGS.write_results:
    section = FLAGS.section or SECTION
    results.replace_section_with_figure(section, text, trajectories_svg(runs, methods),
                                        "trajectories per method")
  return 0


def _define_flags():
  """The study's own flags, defined when it runs as a binary."""
  flags.DEFINE_list("landscape_weightings", [w for w in WEIGHTINGS if w != "static"],
                    "--weighting values to run.")
  flags.DEFINE_integer("landscape_steps", 100000, "Steps per run (the CAGrad paper's code: "
                       "100,000).")
  flags.DEFINE_integer("landscape_every", 500, "Steps between two points of a trajectory.")
  flags.DEFINE_integer("landscape_period", 100, "dwa's period and stch's epoch, in steps.")
  flags.DEFINE_float("front_tolerance", 0.05, "Reached: the final losses within this "
                     "distance of the front (loss units).")
  flags.DEFINE_string("runs_json", None, "Every run's trajectory: read first (an interrupted "
                      "study resumes) and written after each run.")


def console_main():
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  console_main()
