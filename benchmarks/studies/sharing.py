"""Does sharing help where chunk labels are scarce? The learning-curve study.

  python3 -m mtlcore.benchmarks.studies.sharing --data_dir=../shared/data/conll2000 \
      --sizes=250,1000,4000,all --study_settings=chunk_only,alternate,joint --study_seeds=0,1,2 \
      --alternate_samplers=proportional --write_results

(proportional: the sampler dev chose at 1,000; BUILD.md has the commands that chose it and the
weighting method, and that confirmed each on fresh seeds.)

Chunk labels on a seeded random N of CoNLL-2000's training sentences (a fresh draw per seed,
the same draw in every setting), POS labels on all of them; dev is the last 1,000 training
sentences (as mtl-train's conll2000 task set carves it) and makes every decision (each run
keeps its best-on-dev checkpoint); test is only reported. Settings:

- chunk_only: one chunk tagger trained on the N chunk-labelled sentences;
- pos_only: one POS tagger trained on all the sentences, as many steps as joint (it does not
  depend on N: one run per seed serves every size); the POS baseline of the relative gains;
- alternate: the POS corpus (all sentences) and the chunk corpus (the N) alternate, a task per
  step, drawn by `--sampler` (default uniform: 0.5 / 0.5);
- joint: one corpus, every sentence POS-labelled, chunk labels on the N only (partial labels),
  the task losses combined by `--weighting` (default sum).

`--study_architectures` adds, for alternate and joint, a row per trunk architecture other than
hard sharing (mtl-train's `--architecture`, at the tagger's default sizes): its top layer
becomes the architecture and both heads read it (under hard sharing POS reads the first
layer, as in the default tagger).

Every setting sees the chunk-labelled sentences the same number of times (`--chunk_passes`):
chunk_only trains passes x ceil(N / 32) steps; alternate as many chunk steps, so its total is
that over the sampler's expected chunk share; joint passes x ceil(pool / 32) steps, since each
joint epoch over the pool holds each chunk-labelled sentence once. The network is the default
BiLSTM-CRF tagger of `mtl-train` (CRF chunk head, POS head on the first layer); no
language-model task is in any setting. Each run is an `mtl-train` subprocess (what a user
gets); its data files are written under --study_dir/data (never committed).

Reports mean +- std over seeds of test chunk F1 and POS accuracy, the relative gain of each
multi-task setting over the single-task models (chunk F1 over chunk-only, POS accuracy over
pos_only, and their mean, the literature's Delta_m, Maninis et al. 2019), wall time per run,
the paired test difference of each sampler or weighting method against its plain counterpart
(uniform, sum) +- its standard error (also in standard errors), and per setting the variant
with the best mean dev chunk F1; the learning curve is drawn as an SVG (chunk F1 against N,
one line per setting, the std as a band) beside RESULTS.md.
"""

import dataclasses
import datetime
import math
import os
import statistics
import sys

import numpy as np
from absl import flags

# report and the run flags define --write_results and --data_dir.
from mtlcore.benchmarks import hardware, report, results  # pylint: disable=unused-import
from mtlcore.benchmarks.studies import runs as study_runs
from mtlcore.choices import ARCHITECTURES
from mtlcore.tagging import conll2000
from mtlcore.errors import ConfigError
from mtlcore.sampling import TaskSampler
from mtlcore.trainers.cli import common
from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=unused-import

FLAGS = flags.FLAGS
flags.DEFINE_string("study_dir", "runs/sharing", "Where the data files and model directories go.")
flags.DEFINE_list("sizes", ["250", "1000", "4000", "all"], "Chunk-labelled training sentences "
                  "(an integer or 'all').")
flags.DEFINE_list("study_settings", ["chunk_only", "pos_only", "alternate", "joint"],
                  "Settings to train.")
flags.DEFINE_list("study_seeds", ["0", "1", "2"], "Seeds: of the chunk subset, weights, order "
                  "and dropout.")
flags.DEFINE_float("chunk_passes", 40.0, "Times every setting sees each chunk-labelled sentence.")
flags.DEFINE_list("joint_weightings", ["sum"], "Joint setting: one row per --weighting method.")
flags.DEFINE_list("alternate_samplers", ["uniform"], "Alternate setting: one row per --sampler.")
flags.DEFINE_enum("study_trunk", "bilstm", ["bilstm", "conv"], "The tagger's trunk in every "
                  "setting (mtl-train's --trunk).")
flags.DEFINE_list("study_architectures", ["hard"], "Alternate and joint settings: one row per "
                  "sampler or weighting method and --architecture (hard: the default tagger, "
                  "POS reading the first layer; any other: both heads read the architecture "
                  "that replaces the top layer).")
flags.DEFINE_boolean("finished_only", False, "Train nothing: report the runs earlier "
                     "invocations finished in --study_dir; a cell missing a seed is left out "
                     "and named.")
flags.DEFINE_string("svg", None, "Write the learning curve here (default: beside RESULTS.md "
                    "as SECTION.svg when --write_results).")

BATCH_SIZE = 32
TAGGER_FLAGS = ["--task_set=tagging", "--columns=word,pos,chunk", "--crf=chunk", "--reads=pos:1",
                "--placeholder=_"]


@dataclasses.dataclass(frozen=True)
class Files:
  pool: str  # every pool sentence, POS and chunk columns (the POS corpus)
  chunk: str  # the N chunk-labelled sentences
  partial: str  # the pool, chunk "_" outside the N (joint)
  dev: str
  test: str
  pool_size: int


def _write(path, sentences, keep_chunk=None):
  """Writes `word pos chunk` lines; chunk "_" for sentences whose index is not in keep_chunk."""
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    for i, s in enumerate(sentences):
      chunk_known = keep_chunk is None or i in keep_chunk
      for word, pos, chunk in zip(s.words, s.labels("pos"), s.labels("chunk")):
        f.write(f"{word} {pos} {chunk if chunk_known else '_'}\n")
      f.write("\n")
  os.replace(tmp, path)


def write_study_files(train, dev, test, size, seed, directory):
  """(Files, N): the POS pool (all of `train`), the chunk subset (a random N of `train` drawn
  from (seed, N)), the pool with chunk labels on the N only, dev and test; files that exist
  are kept."""
  os.makedirs(directory, exist_ok=True)
  paths = {n: os.path.join(directory, f"{n}.txt") for n in ("pool", "dev", "test")}
  for name, sentences in (("pool", train), ("dev", dev), ("test", test)):
    if not os.path.exists(paths[name]):
      _write(paths[name], sentences)
  n = len(train) if size is None else size
  if n > len(train):
    raise ConfigError(f"--sizes: {n} is more than the {len(train)} training sentences.")
  chosen = set(np.random.default_rng([seed, n]).permutation(len(train))[:n].tolist())
  chunk = os.path.join(directory, f"chunk_{n}_seed{seed}.txt")
  partial = os.path.join(directory, f"partial_{n}_seed{seed}.txt")
  if not os.path.exists(chunk):
    _write(chunk, [s for i, s in enumerate(train) if i in chosen])
  if not os.path.exists(partial):
    _write(partial, train, keep_chunk=chosen)
  return Files(paths["pool"], chunk, partial, paths["dev"], paths["test"], len(train)), n


def split_variant(variant):
  """"cagrad" -> ("cagrad", "hard"); "uniform/mmoe" -> ("uniform", "mmoe"): a multi-task
  row's sampler or weighting method and its trunk architecture."""
  method, _, architecture = (variant or "").partition("/")
  return method or None, architecture or "hard"


def tagger_flags(architecture, trunk="bilstm"):
  """The tagger's mtl-train flags. Under an architecture other than hard both heads read it
  (with POS on the first layer the architecture would serve the chunk task alone)."""
  trunk_flags = [] if trunk == "bilstm" else [f"--trunk={trunk}"]  # bilstm: the default.
  if architecture == "hard":
    return [*TAGGER_FLAGS, *trunk_flags]
  return [f for f in TAGGER_FLAGS if not f.startswith("--reads=")] + [
      *trunk_flags, f"--architecture={architecture}"]


def run_flags_for(setting, variant, files, n, chunk_passes, trunk="bilstm"):
  """(mtl-train flags, train steps) of one run: every setting gives the N chunk-labelled
  sentences `chunk_passes` passes. `variant`: the sampler or weighting method, with
  "/ARCHITECTURE" for a trunk other than hard sharing."""
  chunk_steps = math.ceil(chunk_passes * math.ceil(n / BATCH_SIZE))
  variant, architecture = split_variant(variant)
  common_flags = [*tagger_flags(architecture, trunk), f"--dev={files.dev}",
                  f"--test={files.test}"]
  if setting == "chunk_only":
    return [*common_flags, "--mode=single", "--tasks=chunk", f"--train={files.chunk}"], chunk_steps
  pool_steps = math.ceil(chunk_passes * math.ceil(files.pool_size / BATCH_SIZE))
  if setting == "pos_only":
    return [*common_flags, "--mode=single", "--tasks=pos", f"--train={files.pool}"], pool_steps
  if setting == "alternate":
    sizes = [math.ceil(files.pool_size / BATCH_SIZE), math.ceil(n / BATCH_SIZE)]
    share = TaskSampler(["pos", "chunk"], kind=variant, sizes=sizes, total_steps=chunk_steps * 2,
                        seed=0).expected_share()[1]
    # The share is a mean of float32 softmax rows (0.49999997 for uniform on some CPUs):
    # a relative error far below 1e-6 must not add a step.
    steps = math.ceil(chunk_steps / share * (1 - 1e-6))
    return [*common_flags, "--mode=alternate", f"--sampler={variant}",
            f"--train=pos:{files.pool},chunk:{files.chunk}"], steps
  return [*common_flags, "--mode=joint", f"--weighting={variant}",
          f"--train={files.partial}"], pool_steps


def run_name(setting, variant, n, trunk="bilstm"):
  """A run's directory name without the seed: "1000_joint_cagrad"; "pos_only" for every N;
  "conv_1000_joint_sum_mmoe" for a conv trunk."""
  name = setting if setting == "pos_only" else (
      f"{n}_{setting}" + (f"_{variant.replace('/', '_')}" if variant else ""))
  return name if trunk == "bilstm" else f"{trunk}_{name}"


def _run_dir(study_dir, name, seed):
  return os.path.join(study_dir, f"{name}_seed{seed}")


def finished(study_dir, name, seed, steps):
  """The result of a run an earlier invocation finished with `steps` steps, or None."""
  return study_runs.finished_run(_run_dir(study_dir, name, seed), "study", {"steps": steps})


def train(name, seed, run_flags_list, steps):
  return study_runs.train_once(
      _run_dir(FLAGS.study_dir, name, seed),
      [f"--seed={seed}", f"--train_steps={steps}", f"--eval_every={max(50, steps // 12)}",
       *run_flags_list], "study", {"steps": steps})


def row_names(settings, weightings, samplers, architectures=("hard",)):
  """[(setting, variant)] of the study's rows: a joint row per weighting method and
  architecture, an alternate row per sampler and architecture, one chunk-only row (variant
  None). A variant is the method's name, "/ARCHITECTURE" added when not hard."""
  names = []
  for setting in settings:
    methods = {"joint": weightings, "alternate": samplers}.get(setting)
    if methods is None:
      names.append((setting, None))
      continue
    names += [(setting, m if a == "hard" else f"{m}/{a}") for a in architectures for m in methods]
  return names


def plain_variant(setting):
  """The variant every other is compared with: the plain method on hard sharing."""
  return {"joint": "sum", "alternate": "uniform"}.get(setting)


def label(setting, variant):
  """"joint", "alternate (proportional)", "joint (mmoe)", "joint (cagrad, mmoe)"."""
  shown = _shown(setting, variant)
  return f"{setting} ({', '.join(shown)})" if shown else setting


def variant_label(setting, variant):
  """A variant among its setting's: "cagrad", "mmoe", "cagrad, mmoe"; the plain one "sum,
  hard sharing" / "uniform, hard sharing"."""
  return ", ".join(_shown(setting, variant)) or f"{split_variant(variant)[0]}, hard sharing"


def _shown(setting, variant):
  """What sets `variant` apart from its setting's plain variant: its method, its trunk."""
  method, architecture = split_variant(variant)
  shown = [m for m in (method,) if m not in (None, plain_variant(setting))]
  return shown + ([architecture] if architecture != "hard" else [])


def table(outcomes, sizes, rows):
  """outcomes[(setting, variant, n)] = [train() result per seed]; rows from row_names."""
  lines = ["| chunk-labelled sentences | setting | test chunk F1 | test POS acc. | dev chunk F1 | "
           "relative gain: chunk F1 over chunk-only | POS acc. over POS-only | mean (Δm) | "
           "steps | wall s per run |",
           "|---|---|---|---|---|---|---|---|---|---|"]
  for n in sizes:
    for setting, variant in rows:
      runs = outcomes.get((setting, variant, n))
      if not runs or setting == "pos_only":  # Not a row per N: see pos_only_line.
        continue
      test_f1 = _scores(runs, "test", "chunk/f1")
      gains = [None if setting == "chunk_only" else
               _relative_gain(runs, outcomes.get((single, None, n)), metric)
               for single, metric in (("chunk_only", "chunk/f1"), ("pos_only", "pos/accuracy"))]
      gains.append(None if None in gains else statistics.mean(gains))  # Delta_m.
      shown = [f"{100 * g:+.2f}%" if g is not None else "-" for g in gains]
      lines.append(f"| {n} | {label(setting, variant)} | {study_runs.mean_std(test_f1)} | "
                   f"{study_runs.mean_std(_scores(runs, 'test', 'pos/accuracy'))} | "
                   f"{study_runs.mean_std(_scores(runs, 'dev', 'chunk/f1'))} | {' | '.join(shown)} | "
                   f"{runs[0]['metrics']['study']['steps']} | "
                   f"{statistics.mean(r['seconds'] for r in runs):.0f} |")
  return "\n".join(lines)


def _scores(runs, split, metric):
  """The runs' `metric` on `split`, those that have it (a chunk-only run has no POS score)."""
  return [r["metrics"][split][metric] for r in runs if metric in r["metrics"][split]]


def _relative_gain(runs, single_task_runs, metric):
  """(mean test `metric` of runs - that of the single-task runs) / the latter; None without
  single-task runs."""
  if not single_task_runs:
    return None
  base = statistics.mean(_scores(single_task_runs, "test", metric))
  return (statistics.mean(_scores(runs, "test", metric)) - base) / base


def pos_only_line(outcomes, sizes):
  """One sentence on the POS-only baseline (the same runs serve every N), or ""."""
  runs = next((outcomes[("pos_only", None, n)] for n in sizes if ("pos_only", None, n) in outcomes),
              None)
  if not runs:
    return ""
  return (f"POS-only (every training sentence, {runs[0]['metrics']['study']['steps']} steps, the "
          f"same runs for every N): test POS accuracy "
          f"{study_runs.mean_std(_scores(runs, 'test', 'pos/accuracy'))}, "
          f"{statistics.mean(r['seconds'] for r in runs):.0f} s per run.")


def paired_differences(outcomes, sizes, rows):
  """Test chunk F1 of every non-default variant minus its plain counterpart, paired by seed:
  mean +- standard error."""
  lines = []
  for n in sizes:
    for setting, variant in rows:
      plain = plain_variant(setting)
      if variant in (None, plain):
        continue
      a, b = outcomes.get((setting, variant, n)), outcomes.get((setting, plain, n))
      if not a or not b:
        continue
      diff = [x["metrics"]["test"]["chunk/f1"] - y["metrics"]["test"]["chunk/f1"]
              for x, y in zip(a, b)]
      mean = statistics.mean(diff)
      se = statistics.stdev(diff) / math.sqrt(len(diff)) if len(diff) > 1 else None
      if se is None:
        shown = f"{mean:+.2f} ± - (one seed) | -"
      else:
        shown = f"{mean:+.2f} ± {se:.2f} | " + (f"{mean / se:+.1f}" if se > 0 else "-")
      lines.append(f"| {n} | {label(setting, variant)} - {label(setting, plain)} | "
                   f"{shown} | {len(diff)} |")
  return _markdown_table(["chunk-labelled sentences", "paired by seed",
                          "test chunk F1 difference, mean ± standard error",
                          "in standard errors", "seeds"], lines)


def chosen_on_dev(outcomes, sizes, rows):
  """Per size and multi-task setting with more than one variant, the variant with the best
  mean dev chunk F1 (the test split plays no part): the one to confirm on fresh seeds."""
  lines = []
  for n in sizes:
    for setting in dict.fromkeys(s for s, _ in rows if s != "pos_only"):
      dev = {v: statistics.mean(r["metrics"]["dev"]["chunk/f1"]
                                for r in outcomes[(setting, v, n)])
             for s, v in rows if s == setting and (s, v, n) in outcomes}
      if len(dev) < 2:
        continue
      best = max(dev, key=dev.get)
      runner_up = max((v for v in dev if v != best), key=dev.get)
      lines.append(f"| {n} | {setting} | {variant_label(setting, best)} ({dev[best]:.2f}) | "
                   f"{variant_label(setting, runner_up)} ({dev[runner_up]:.2f}) | "
                   f"{len(dev)} |")
  return _markdown_table(["chunk-labelled sentences", "setting",
                          "chosen on dev (mean dev chunk F1)", "runner-up", "variants compared"],
                         lines)


def _markdown_table(columns, lines):
  """A Markdown table of `columns` over the row `lines`; "" when there are none."""
  if not lines:
    return ""
  return "\n".join([f"| {' | '.join(columns)} |", "|" + "---|" * len(columns), *lines])


def learning_curve_svg(outcomes, sizes, rows, pool_size):
  """Chunk F1 (test) against chunk-labelled sentences (log scale), mean line and std band per
  setting: a self-contained SVG string. pool_size: the POS-labelled training sentences."""
  width, height, margin = 640, 400, 60
  settings = [(s, v) for s, v in rows
              if s != "pos_only" and any((s, v, n) in outcomes for n in sizes)]
  points = {}
  for key in settings:
    for n in sizes:
      runs = outcomes.get((*key, n))
      if runs:
        f1 = [r["metrics"]["test"]["chunk/f1"] for r in runs]
        points.setdefault(key, []).append(
            (n, statistics.mean(f1), statistics.stdev(f1) if len(f1) > 1 else 0.0))
  all_y = [m + d for p in points.values() for _, m, d in p] + [
      m - d for p in points.values() for _, m, d in p]
  if not all_y:
    return None
  y_lo, y_hi = math.floor(min(all_y)) - 1, math.ceil(max(all_y)) + 1
  x_lo, x_hi = math.log(min(sizes)), math.log(max(sizes))
  x_span = max(x_hi - x_lo, 1e-9)

  def xy(n, y):
    x = margin + (math.log(n) - x_lo) / x_span * (width - 2 * margin)
    return x, height - margin - (y - y_lo) / (y_hi - y_lo) * (height - 2 * margin)

  colours = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#17becf"]
  out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
         f'font-family="sans-serif" font-size="12">',
         f'<rect width="{width}" height="{height}" fill="white"/>',
         f'<line x1="{margin}" y1="{height - margin}" x2="{width - margin}" '
         f'y2="{height - margin}" stroke="black"/>',
         f'<line x1="{margin}" y1="{margin}" x2="{margin}" y2="{height - margin}" stroke="black"/>',
         f'<text x="{width / 2}" y="{height - 15}" text-anchor="middle">chunk-labelled training '
         f'sentences (log scale; POS labels on all {pool_size})</text>',
         f'<text x="15" y="{height / 2}" transform="rotate(-90 15 {height / 2})" '
         f'text-anchor="middle">test chunk F1 (mean ± std over seeds)</text>']
  for n in sizes:
    x, _ = xy(n, y_lo)
    out.append(f'<text x="{x:.1f}" y="{height - margin + 16}" text-anchor="middle">{n}</text>')
  for y in range(int(y_lo), int(y_hi) + 1, max(1, (int(y_hi) - int(y_lo)) // 8)):
    _, py = xy(min(sizes), y)
    out.append(f'<text x="{margin - 6}" y="{py + 4:.1f}" text-anchor="end">{y}</text>')
    out.append(f'<line x1="{margin}" y1="{py:.1f}" x2="{width - margin}" y2="{py:.1f}" '
               f'stroke="#ddd"/>')
  for i, (key, pts) in enumerate(points.items()):
    colour = colours[i % len(colours)]
    upper = [xy(n, m + d) for n, m, d in pts]
    lower = [xy(n, m - d) for n, m, d in reversed(pts)]
    band = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(n, m) for n, m, _ in pts))
    out.append(f'<polygon points="{band}" fill="{colour}" fill-opacity="0.2" stroke="none"/>')
    out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
    out.append(f'<text x="{margin + 10}" y="{margin + 16 * i}" fill="{colour}">'
               f'{label(*key)}</text>')
  out.append("</svg>")
  return "\n".join(out) + "\n"


def _parse_sizes():
  sizes = []
  for s in FLAGS.sizes:
    if s == "all":
      sizes.append(None)
      continue
    try:
      value = int(s)
    except ValueError:
      raise ConfigError(f"--sizes takes integers or 'all', got {s!r}.") from None
    if value <= 0:
      raise ConfigError(f"--sizes must be positive, got {value}.")
    sizes.append(value)
  return sizes


def run():
  unknown = [s for s in FLAGS.study_settings
             if s not in ("chunk_only", "pos_only", "alternate", "joint")]
  if unknown:
    raise ConfigError(f"--study_settings: unknown {unknown}; choose from chunk_only, "
                      f"pos_only, alternate, joint.")
  try:
    seeds = [int(s) for s in FLAGS.study_seeds]
  except ValueError:
    raise ConfigError(f"--study_seeds must be integers, got {FLAGS.study_seeds}.") from None
  if not FLAGS.chunk_passes > 0:
    raise ConfigError(f"--chunk_passes must be positive, got {FLAGS.chunk_passes}.")
  unknown = [a for a in FLAGS.study_architectures if a not in ARCHITECTURES]
  if unknown:
    raise ConfigError(f"--study_architectures: unknown {unknown}; choose from "
                      f"{', '.join(ARCHITECTURES)}.")
  rows = row_names(FLAGS.study_settings, FLAGS.joint_weightings, FLAGS.alternate_samplers,
                   FLAGS.study_architectures)
  splits = conll2000.load_splits(FLAGS.data_dir)  # Read once; each (N, seed) writes its files.
  outcomes, sizes, missing, results_by_run = {}, [], [], {}
  for size in _parse_sizes():
    for seed in seeds:
      files, n = write_study_files(splits.train, splits.dev, splits.test, size, seed,
                                   os.path.join(FLAGS.study_dir, "data"))
      for setting, variant in rows:
        run_flags_list, steps = run_flags_for(setting, variant, files, n, FLAGS.chunk_passes,
                                              FLAGS.study_trunk)
        name = run_name(setting, variant, n, FLAGS.study_trunk)
        if (name, seed) in results_by_run:  # pos_only: one run serves every N.
          result = results_by_run[(name, seed)]
          if result is not None:
            outcomes.setdefault((setting, variant, n), []).append(result)
          continue
        result = (finished(FLAGS.study_dir, name, seed, steps) if FLAGS.finished_only
                  else train(name, seed, run_flags_list, steps))
        results_by_run[(name, seed)] = result
        if result is None:
          missing.append(f"{name} seed {seed}")
          continue
        outcomes.setdefault((setting, variant, n), []).append(result)
        test = result["metrics"]["test"]
        score = (f"test chunk F1 {test['chunk/f1']:.2f}" if "chunk/f1" in test else
                 f"test POS accuracy {test['pos/accuracy']:.2f}")
        print(f"{name} seed {seed}: {score} ({result['seconds']:.0f} s)", flush=True)
    sizes.append(n)
  incomplete = [k for k, runs in outcomes.items() if len(runs) < len(seeds)]
  for key in incomplete:  # Never a mean over fewer seeds than the table says.
    del outcomes[key]
  device = hardware.describe_device()
  trained = {id(r): r for runs in outcomes.values() for r in runs}.values()  # pos_only: once.
  title = ("## Trunk architectures where chunk labels are scarce (CoNLL-2000)"
           if set(FLAGS.study_architectures) - {"hard"} else
           "## Does sharing help where chunk labels are scarce? (CoNLL-2000)")
  sections = [
      title, "",
      f"Generated by `python3 -m mtlcore.benchmarks.studies.sharing {' '.join(sys.argv[1:])}` on "
      f"{datetime.date.today().isoformat()}, {device['device']} {device['name']} "
      f"({device.get('cores', '')} cores), TensorFlow {device['tensorflow']}. Seeds {seeds}; "
      f"chunk labels on a seeded random N of the {files.pool_size} training sentences, POS "
      f"on all; every setting sees each chunk-labelled sentence {FLAGS.chunk_passes:g} times; "
      f"best-on-dev checkpoint (dev: the last 1,000 training sentences), test reported. "
      f"{'Default BiLSTM' if FLAGS.study_trunk == 'bilstm' else 'Conv-trunk'}-CRF tagger, "
      f"no language-model task. Code that trained the runs: "
      f"{study_runs.code_versions(trained) or 'none'}.", "",
      table(outcomes, sizes, rows)]
  pos_only = pos_only_line(outcomes, sizes)
  if pos_only:
    sections += ["", pos_only]
  if missing:
    sections += ["", f"Not run yet, so left out: {', '.join(missing)}" + (
        f" (and the other seeds of {', '.join(f'{n} {label(s, v)}' for s, v, n in incomplete)})"
        if incomplete else "") + "."]
  paired = paired_differences(outcomes, sizes, rows)
  if paired:
    sections += ["", paired]
  chosen = chosen_on_dev(outcomes, sizes, rows)
  if chosen:
    sections += ["", chosen]
  svg = learning_curve_svg(outcomes, sizes, rows, files.pool_size) if len(sizes) > 1 else None
  section = FLAGS.section or "sharing"
  svg_path = FLAGS.svg or (os.path.join(os.path.dirname(results.RESULTS_MD), f"{section}.svg")
                           if FLAGS.write_results else None)
  if svg and svg_path:
    with open(svg_path, "w", encoding="utf-8") as f:
      f.write(svg)
    sections += ["", f"![learning curve]({os.path.basename(svg_path)})"]
  text = "\n".join(sections)
  print(text)
  if FLAGS.write_results:
    results.replace_section(section, text)
  return outcomes


def console_main():
  common.run("sharing", run)


if __name__ == "__main__":
  console_main()
