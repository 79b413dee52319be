"""mtl-bench: training throughput of mtlcore against Keras model.fit and the machine's peak.

  mtl-bench                       # CoNLL-2000 default sizes, both trunks, all modes
  mtl-bench --quick               # tiny sizes, a smoke run
  mtl-bench --large --output_json=bench.json
  mtl-bench --strategy=mirrored --num_logical_cpus=2   # 1 replica against 2 (benchmarks/replicas.py)

In one invocation, for each trunk (BiLSTM, conv) and size, it times:
  - Keras 3 model.fit on the identical architecture (the baseline), fed the same batches;
  - mtlcore training steps for each execution (eager, tf.function, XLA) and each training
    mode (joint, alternating, POS only, chunk only), built by mtlcore.trainers.build exactly
    as mtl-train builds them for the same flags (the POS-only row is `--mode=single
    --tasks=pos`), over the conll2000 task set's tagger with vocabularies of CoNLL-2000's
    sizes;
  - Keras fit against the XLA joint step (fp32) once more, interleaved: --head_to_head_rounds
    rounds of a block of steps of each, the order reversed every other round, so that the
    machine's drifts between fast and slow phases reach both (the rows above run one after
    another, and Keras' own step read 65-93 ms in different invocations here);
and the machine's limit: matmul peaks for fp32 and bf16, several sizes, with and without XLA,
best of repeated trials after a warm-up, in this process (mtlcore.benchmarks.hardware), and,
when bf16 is among --precisions, the step's heaviest ops (trunk conv, char conv, the BiLSTM's
input projection) forward and backward in fp32 and bf16, with and without XLA. A row
above the peak of its own precision means the measurement is wrong: the benchmark says so in
one line and exits 1 without writing RESULTS.md. Step times are medians (and p90) over timed
calls after warm-up; compile time (the warm-up call) is reported apart. FLOPs are counted at
the fixed benchmark shape (padded tokens). It prints a Markdown table and ratios, and writes
JSON with --output_json. The chunk head is a softmax, as Keras has no CRF layer, except in the
`default` rows (CRF chunk head, word dropout: the joint step mtl-train ran by default before
the language-model task) and the `default_lm` rows: that step with the auxiliary
language-model task (mtlcore.tagging.language_model) over --lm_vocab words (the conv trunk's
first layer then directional), the step mtl-train runs by default now; the LM's share of the
step's time and FLOPs is the ratio of the two rows.
"""

import datetime
import itertools
import statistics
import sys
import time

import numpy as np
import tensorflow as tf
from absl import flags

from mtlcore import precision as precision_lib
from mtlcore import task_set as task_set_lib
from mtlcore.benchmarks import flops as flops_lib
from mtlcore.benchmarks import cli, hardware, results
from mtlcore.benchmarks import report as report_lib
from mtlcore.benchmarks.keras_baseline import build_keras_tagger, keras_step_times, keras_steps
from mtlcore.tagging.vocab import Vocabularies
from mtlcore.tagging import tagger
from mtlcore.tagging.language_model import LM_TASK, LanguageModelConfig
from mtlcore.tagging import task_set as tagging
from mtlcore.trainers import build
from mtlcore.trainers.config import RunConfig

FLAGS = flags.FLAGS

NUM_WORDS, NUM_CHARS, MAX_CHARS = 7875, 82, 20
NUM_TAGS = {"pos": 44, "chunk": 22}
TASKS = ("pos", "chunk")
DEFAULT_BATCH_SIZE = 32


def lm_config():
  """The LM task the default_lm rows time: --lm_vocab words, the other settings default."""
  return LanguageModelConfig(**({"vocab_size": FLAGS.lm_vocab} if FLAGS.lm_vocab else {}))


def synthetic_vocabularies(lm_vocab=LanguageModelConfig.vocab_size):
  """Vocabularies of CoNLL-2000's sizes (ids 0 and 1 are padding and unknown), with `lm_vocab`
  words for the LM task."""
  tags = {t: tuple(f"{t}{i}" for i in range(n)) for t, n in NUM_TAGS.items()}
  tags[LM_TASK] = tuple(f"w{i}" for i in range(lm_vocab))
  return Vocabularies(words=tuple(f"w{i}" for i in range(NUM_WORDS - 2)),
                      chars=tuple(chr(0x100 + i) for i in range(NUM_CHARS - 2)), tags=tags)


def synthetic_batches(count, batch, seq_len, seed=0, lm_vocab=LanguageModelConfig.vocab_size):
  """`count` batches shaped like CoNLL-2000 ones; lengths uniform in [seq_len/2, seq_len].
  The LM task's labels are word classes in [0, lm_vocab] (lm_vocab: unknown)."""
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(count):
    length = rng.integers(seq_len // 2, seq_len + 1, size=batch).astype(np.int32)
    mask = np.arange(seq_len)[None] < length[:, None]
    words = np.where(mask, rng.integers(1, NUM_WORDS, size=(batch, seq_len)), 0)
    chars = np.where(mask[:, :, None], rng.integers(1, NUM_CHARS, (batch, seq_len, MAX_CHARS)), 0)
    labels = {t: np.where(mask, rng.integers(0, n, size=(batch, seq_len)), 0)
              for t, n in {**NUM_TAGS, LM_TASK: lm_vocab + 1}.items()}
    out.append(({"words": words.astype(np.int32), "chars": chars.astype(np.int32),
                 "length": length}, {t: v.astype(np.int32) for t, v in labels.items()}))
  return out


def as_dataset(batches, tasks=TASKS):
  features = {k: np.stack([b[0][k] for b in batches]) for k in batches[0][0]}
  labels = {t: np.stack([b[1][t] for b in batches]) for t in tasks}
  return tf.data.Dataset.from_tensor_slices((features, labels)).repeat().prefetch(4)


def mode_tasks(mode):
  """The tasks a row's step trains: POS and chunking (joint, alternate, default, keras), with
  the LM task as well (default_lm), or the one task a single-task row names."""
  if mode in TASKS:
    return (mode,)
  return (*TASKS, LM_TASK) if mode == "default_lm" else TASKS


def row_options(mode, *, trunk, reads, **overrides):
  """The task-set options of a row's step: a softmax chunk head and no word dropout (what the
  Keras model can express too); for "default" the step mtl-train ran by default before the
  LM task (CRF chunk head, word dropout); for "default_lm" that step with the LM task over
  --lm_vocab words."""
  if mode not in ("default", "default_lm"):
    return dict(trunk=trunk, crf=(), word_dropout=0.0, reads=reads, **overrides)
  default = dict(trunk=trunk, reads=reads, crf=("chunk",), **overrides)
  if mode == "default":
    return default
  lm = lm_config()
  return dict(default, lm_vocab=lm.vocab_size, lm_projection=lm.projection_size,
              lm_weight=lm.weight)


def bench_config(mode, *, options, jit_compile, batch_size, steps, precision="fp32",
                 weighting="sum"):
  """The RunConfig of a benchmark row: mode "joint" or "alternate" over both tasks ("default"
  is joint; "default_lm" joint with the LM task as well, `options` holding its lm_*), or a
  task name for `--mode=single --tasks=NAME`."""
  single = mode in TASKS
  tasks = mode_tasks(mode)
  mode = "joint" if mode in ("default", "default_lm") else mode
  weighting, _, where = weighting.partition("/")  # METHOD/representation: cli.weighting_rows.
  return RunConfig(task_set="conll2000", mode="single" if single else mode,
                   tasks=tasks, options=options, xla=jit_compile,
                   batch_size=batch_size, train_steps=steps, seed=0, precision=precision,
                   weighting=weighting, task_gradients=where or "parameters")


def build_bench_trainer(config, dataset_for, vocabularies=None):
  """The trainer mtl-train builds for `config`, fed by `dataset_for(tasks)` instead of files.

  Everything but the data source goes through mtlcore.trainers.build.
  """
  resolved = build.resolve(config)
  config, task_set = resolved.config, resolved.task_set
  lm_vocab = task_set.lm.vocab_size if task_set.lm else LanguageModelConfig.vocab_size
  vocabularies = vocabularies or synthetic_vocabularies(lm_vocab)
  model = task_set.build_model_for(config.tasks, vocabularies, seed=config.seed)
  model.set_compute_dtype(precision_lib.compute_dtype(config.precision))
  tasks = task_set.make_tasks(model, config.tasks)
  if config.mode == "alternate":
    streams = {t: task_set_lib.Stream(dataset_for((t,)).skip, 1) for t in config.tasks}
  else:
    streams = {"joint": task_set_lib.Stream(dataset_for(config.tasks).skip, 1)}
  return build.build_trainer(config, model=model, tasks=tasks, streams=streams,
                             total_steps=config.train_steps)


def time_mtlcore(options, mode, execution, batches, steps, per_call, precision="fp32",
                 weighting="sum"):
  """(compile seconds, per-step seconds array, traces, steps) for one configuration; `steps(n)`
  trains the same trainer about n steps more, in calls of `per_call`, and returns the per-step
  seconds of each call (the interleaved comparison times the row's trainer through it)."""
  config = bench_config(mode, options=options, jit_compile=execution == "xla",
                        batch_size=len(batches[0][0]["length"]), steps=10 * steps,
                        precision=precision, weighting=weighting)
  trainer = build_bench_trainer(config, lambda tasks: as_dataset(batches, tasks))

  def run_steps(n):
    tf.config.run_functions_eagerly(execution == "eager")
    try:
      times = []
      for _ in range(max(n // per_call, 1)):
        start = time.perf_counter()
        trainer.train(per_call)
        times.append((time.perf_counter() - start) / per_call)
    finally:
      tf.config.run_functions_eagerly(False)
    return np.array(times)

  start = time.perf_counter()
  run_steps(per_call)  # Traces and compiles (the alternating loop may need 2 calls).
  compile_seconds = time.perf_counter() - start
  run_steps(per_call)
  times = run_steps(max(steps, 3 * per_call))
  return compile_seconds, times, trainer.step_trace_counts(), run_steps


def interleave(runs, *, rounds, block):
  """Times several configurations side by side: `rounds` rounds, each running `block` steps of
  every run in `runs` (name -> steps(n), which returns per-step seconds), in the given order
  on even rounds and reversed on odd ones, so that a drift of the machine's speed reaches all
  alike. The first timing of every block is dropped: it carries the switch (a new model.fit
  call's iterator, caches the other run filled). Returns (name -> per-step seconds over all
  rounds, [per round: name -> median])."""
  names = list(runs)
  times = {name: [] for name in names}
  per_round = []
  for r in range(rounds):
    medians = {}
    for name in (names if r % 2 == 0 else names[::-1]):
      seconds = runs[name](block)[1:]
      times[name].extend(seconds)
      medians[name] = float(np.median(seconds))
    per_round.append(medians)
  return {name: np.array(t) for name, t in times.items()}, per_round


def head_to_head(trunk, size, keras_steps_fn, mtlcore_steps_fn, *, rounds, block):
  """Keras fit against mtlcore's XLA joint step (fp32), interleaved (see `interleave`); both
  runs are the rows' own, already compiled, and get one untimed block first."""
  runs = {"keras": keras_steps_fn, "mtlcore": mtlcore_steps_fn}
  for run_steps in runs.values():
    run_steps(block)
  times, per_round = interleave(runs, rounds=rounds, block=block)
  keras_ms, ours_ms = (1000 * float(np.median(times[n])) for n in ("keras", "mtlcore"))
  round_ratios = [m["keras"] / m["mtlcore"] for m in per_round]
  return {"trunk": trunk, "size": size, "rounds": rounds, "block": block,
          "keras_ms": keras_ms, "mtlcore_ms": ours_ms, "ratio": keras_ms / ours_ms,
          "round_ratios": round_ratios}


def _sizes():
  if FLAGS.quick:
    return {"quick": dict(word_dim=16, char_dim=8, char_filters=8, hidden_size=16)}
  sizes = {"default": {}}
  if FLAGS.large:
    sizes["large"] = dict(word_dim=200, char_filters=128, hidden_size=256)
  return sizes


def _row(trunk, size, execution, mode, seconds, batch, real_tokens, config, compile_s=None,
         peak=None, precision="fp32", weighting="sum"):
  median, p90 = float(np.median(seconds)), float(np.percentile(seconds, 90))
  tasks = mode_tasks(mode)
  flop = flops_lib.tagger_train_flops(config, batch=batch, seq_len=FLAGS.seq_len,
                                      max_chars=MAX_CHARS, num_tags=NUM_TAGS, tasks=tasks,
                                      lm=lm_config())
  if mode == "alternate":  # One task per step: on average half the heads, the trunk once.
    flop = statistics.mean(flops_lib.tagger_train_flops(
        config, batch=batch, seq_len=FLAGS.seq_len, max_chars=MAX_CHARS, num_tags=NUM_TAGS,
        tasks=(t,)) for t in TASKS)
  gflops = flop / median / 1e9
  return {"trunk": trunk, "size": size, "execution": execution, "mode": mode,
          "step_ms_median": 1000 * median, "step_ms_p90": 1000 * p90,
          "compile_s": compile_s, "examples_per_sec": batch / median,
          "padded_tokens_per_sec": batch * FLAGS.seq_len / median,
          "tokens_per_sec": real_tokens / median, "gflops": gflops, "precision": precision,
          "weighting": weighting, "flop_per_step": flop,
          "fraction_of_peak": gflops / peak if peak else None}


def run():
  if FLAGS.strategy != "default":  # 1 replica against several (mtlcore.benchmarks.replicas).
    from mtlcore.benchmarks import replicas  # pylint: disable=import-outside-toplevel
    return replicas.run(sys.modules[__name__])
  batch_size = DEFAULT_BATCH_SIZE if FLAGS.batch_size is None else FLAGS.batch_size
  steps = 10 if FLAGS.quick else FLAGS.steps
  device = hardware.describe_device()
  peaks = hardware.matmul_peaks((256, 512) if FLAGS.quick else (1024, 2048, 4096),
                                trials=2 if FLAGS.quick else 5)
  op_table = []
  if "bf16" in FLAGS.precisions:  # What bf16 buys op by op, at the first size's shape.
    op_table = hardware.op_speeds(
        hardware.heavy_ops(tagger.TaggerConfig(**next(iter(_sizes().values()))),
                           batch=batch_size, seq_len=FLAGS.seq_len, max_chars=MAX_CHARS),
        trials=2 if FLAGS.quick else 5)
  lm = lm_config()
  batches = synthetic_batches(8, batch_size, FLAGS.seq_len, lm_vocab=lm.vocab_size)
  reads = {"pos": 1} if FLAGS.reads is None else tagging.parse_task_map("reads", FLAGS.reads,
                                                                         int)
  real_tokens = float(np.mean([b[0]["length"].sum() for b in batches]))
  rows, contests = [], []
  for size, overrides in _sizes().items():
    for trunk in FLAGS.trunks:
      config = tagger.TaggerConfig(**row_options("joint", trunk=trunk, reads=reads,
                                                 **overrides))
      if FLAGS.keras:
        model = build_keras_tagger(config, num_words=NUM_WORDS, num_chars=NUM_CHARS,
                                   num_tags=NUM_TAGS, max_chars=MAX_CHARS)
        keras_data = as_dataset(batches).map(
            lambda f, l: ({"words": f["words"], "chars": f["chars"]}, l))
        seconds = keras_step_times(model, keras_data, warmup=3, steps=steps)
        rows.append(_row(trunk, size, "keras_fit", "keras", seconds, batch_size,
                         real_tokens, config, peak=peaks["peak"].get("fp32")))
        print(_line(rows[-1]), flush=True)
      xla_joint_steps = None  # The XLA joint fp32 row's trainer, for the interleaved timing.
      for precision, execution, mode, method in itertools.product(
          FLAGS.precisions, FLAGS.executions, FLAGS.modes, cli.weighting_rows()):
        if method != "sum" and mode not in ("joint", "default"):
          continue  # Weighting methods are joint mode's.
        run_steps = min(steps, 10) if execution == "eager" else steps
        mode_options = row_options(mode, trunk=trunk, reads=reads, **overrides)
        compile_s, seconds, retraces, row_steps = time_mtlcore(
            mode_options, mode, execution, batches, run_steps, FLAGS.steps_per_call, precision,
            method)
        if (execution, mode, precision, method) == ("xla", "joint", "fp32", "sum"):
          xla_joint_steps = row_steps
        tagger_options = {k: v for k, v in mode_options.items() if not k.startswith("lm_")}
        rows.append(_row(trunk, size, execution, mode, seconds, batch_size, real_tokens,
                         tagger.TaggerConfig(**tagger_options), compile_s=compile_s,
                         peak=peaks["peak"].get(precision), precision=precision,
                         weighting=method))
        rows[-1]["traces_per_step_function"] = retraces
        print(_line(rows[-1]), flush=True)
      if FLAGS.keras and FLAGS.head_to_head_rounds > 0 and xla_joint_steps:
        contests.append(head_to_head(
            trunk, size, keras_steps(model, keras_data), xla_joint_steps,
            rounds=FLAGS.head_to_head_rounds,
            block=max(steps // FLAGS.head_to_head_rounds, 2 * FLAGS.steps_per_call)))
        print(_contest_line(contests[-1]), flush=True)
  report = {"device": device, "peaks": peaks, "batch_size": batch_size,
            "seq_len": FLAGS.seq_len, "rows": rows, "head_to_head": contests,
            "op_speeds": op_table, "ratios": ratios(rows, contests, op_table),
            "argv": sys.argv[1:]}
  text = markdown(report)
  print(text)
  if FLAGS.output_json:
    report_lib.write_json(FLAGS.output_json, report)
  hardware.check_below_peak(rows, peaks["peak"])  # A wrong measurement writes no results.
  if FLAGS.write_results:
    results.replace_section("throughput", "\n".join([
        "## Training throughput (mtl-bench)", "",
        f"Generated by `mtl-bench {' '.join(sys.argv[1:])}` on "
        f"{datetime.date.today().isoformat()}. Synthetic batches shaped like CoNLL-2000 ones, "
        f"identical for every row; chunk head softmax (Keras has no CRF) except in the "
        f"`default` rows (CRF chunk head, word dropout 0.1: the step mtl-train runs).", "",
        text]))
  return report


def _contest_line(contest):
  return (f"{contest['trunk']:6s} {contest['size']:7s} interleaved: Keras fit "
          f"{contest['keras_ms']:.1f} ms/step, XLA joint {contest['mtlcore_ms']:.1f} ms/step: "
          f"{contest['ratio']:.2f}x")


def _line(row):
  return (f"{row['trunk']:6s} {row['size']:7s} {row['execution']:9s} {row['precision']:4s} "
          f"{row['mode']:9s} {row['weighting']:11s} "
          f"{row['step_ms_median']:8.1f} ms/step  {row['tokens_per_sec']:9.0f} tokens/s")


def _best_per_precision(op_table):
  """op -> {precision: best ms over XLA and not} (only measured cells)."""
  best = {}
  for r in op_table:
    if r["ms"] is not None:
      cell = best.setdefault(r["op"], {})
      cell[r["precision"]] = min(cell.get(r["precision"], float("inf")), r["ms"])
  return best


def ratios(rows, contests=(), op_table=()):
  """The targets of the benchmark issue, as measured ratios."""
  out = {f"{c['trunk']}/{c['size']}/xla/fp32: joint tokens/s vs keras fit, interleaved":
         c["ratio"] for c in contests}
  for op, best in _best_per_precision(op_table).items():
    if "fp32" in best and "bf16" in best:
      out[f"{op}: best bf16 vs best fp32 (speed)"] = best["fp32"] / best["bf16"]
  for r in rows:
    if r["weighting"] != "sum":
      plain = [s for s in rows if s["weighting"] == "sum" and all(
          s[k] == r[k] for k in ("trunk", "size", "execution", "mode", "precision"))]
      if plain:
        out[f"{r['trunk']}/{r['size']}/{r['execution']}/{r['precision']}/{r['mode']}: "
            f"{r['weighting']} step / sum step"] = r["step_ms_median"] / plain[0]["step_ms_median"]
  get = {(r["trunk"], r["size"], r["execution"], r["mode"], r["precision"]): r for r in rows
         if r["weighting"] == "sum"}
  for (trunk, size, execution, mode, precision), r in get.items():
    name = f"{trunk}/{size}/{execution}/{precision}"
    keras = get.get((trunk, size, "keras_fit", "keras", "fp32"))
    if mode == "joint" and keras:
      out[f"{name}: joint tokens/s vs keras fit"] = r["tokens_per_sec"] / keras["tokens_per_sec"]
    single = [get.get((trunk, size, execution, t, precision)) for t in TASKS]
    if mode == "joint" and all(single):
      out[f"{name}: joint step / (pos step + chunk step)"] = (
          r["step_ms_median"] / sum(s["step_ms_median"] for s in single))
    function = get.get((trunk, size, "function", mode, precision))
    if execution == "xla" and function:
      out[f"{trunk}/{size}/{precision}/{mode}: xla tokens/s vs tf.function"] = (
          r["tokens_per_sec"] / function["tokens_per_sec"])
    default = get.get((trunk, size, execution, "default", precision))
    if mode == "default_lm" and default:
      out[f"{name}: default_lm step / default step (time)"] = (
          r["step_ms_median"] / default["step_ms_median"])
      out[f"{name}: default_lm step / default step (FLOPs)"] = (
          r["flop_per_step"] / default["flop_per_step"])
    fp32 = get.get((trunk, size, execution, mode, "fp32"))
    if precision != "fp32" and fp32:
      out[f"{trunk}/{size}/{execution}/{mode}: {precision} tokens/s vs fp32"] = (
          r["tokens_per_sec"] / fp32["tokens_per_sec"])
  return out


def markdown(report):
  d = report["device"]
  peaks = report["peaks"]
  lines = [f"Device: {d['device']} {d['name']} ({d.get('cores', d.get('count'))} "
           f"{'cores' if d['device'] == 'CPU' else 'devices'}), TensorFlow {d['tensorflow']}; "
           f"batch {report['batch_size']} x {report['seq_len']} tokens.", "",
           "Matmul peak, n x n x n, best of repeated trials after a warm-up, in this process "
           "(the thread settings of training); the peak of a precision is its best cell:", "",
           "| precision | " + " | ".join(f"n={n} {'XLA' if x else 'no XLA'}" for n, x in
                                         _peak_columns(peaks)) + " | peak |",
           "|---|" + "---|" * (len(_peak_columns(peaks)) + 1)]
  for precision, best in peaks["peak"].items():
    cells = {(r["n"], r["xla"]): r["gflops"] for r in peaks["table"]
             if r["precision"] == precision}
    lines.append(f"| {precision} | " + " | ".join(
        f"{cells[c]:.0f}" if cells.get(c) else "-" for c in _peak_columns(peaks))
                 + f" | **{best:.0f}** |")
  lines += ["", "| trunk | size | execution | precision | mode | weighting | ms/step (median) | "
            "p90 | compile s | tokens/s (real) | tokens/s (padded) | examples/s | GFLOP/s | "
            "of its precision's peak |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
  for r in report["rows"]:
    compile_s = f"{r['compile_s']:.1f}" if r["compile_s"] is not None else "-"
    lines.append(
        f"| {r['trunk']} | {r['size']} | {r['execution']} | {r['precision']} | {r['mode']} | "
        f"{r.get('weighting', 'sum')} | "
        f"{r['step_ms_median']:.1f} | {r['step_ms_p90']:.1f} | {compile_s} | "
        f"{r['tokens_per_sec']:.0f} | {r['padded_tokens_per_sec']:.0f} | "
        f"{r['examples_per_sec']:.0f} | {r['gflops']:.1f} | "
        f"{100 * (r['fraction_of_peak'] or 0):.1f}% |")
  if report.get("op_speeds"):
    lines += ["", "The step's heaviest ops at this shape, forward + backward, best of repeated "
              "trials after a warm-up (ms):", "",
              "| op | fp32 | fp32 XLA | bf16 | bf16 XLA | best bf16 vs best fp32 |",
              "|---|---|---|---|---|---|"]
    cells = {(r["op"], r["precision"], r["xla"]): r["ms"] for r in report["op_speeds"]}
    for op, best in _best_per_precision(report["op_speeds"]).items():
      shown = [cells.get((op, p, x)) for p in ("fp32", "bf16") for x in (False, True)]
      speedup = (f"{best['fp32'] / best['bf16']:.2f}x" if "fp32" in best and "bf16" in best
                 else "-")
      lines.append(f"| {op} | " + " | ".join(f"{ms:.2f}" if ms else "-" for ms in shown)
                   + f" | {speedup} |")
  if report.get("head_to_head"):
    first = report["head_to_head"][0]
    lines += ["", f"Keras fit against the XLA joint step (fp32), interleaved: {first['rounds']} "
              f"rounds of {first['block']} steps of each, the order reversed every other round, "
              "the first timing of each block dropped; medians over all timed steps, and the "
              "ratio of each round's medians:", "",
              "| trunk | size | Keras fit ms/step | XLA joint ms/step | tokens/s ratio | "
              "per-round ratios (min-max) |", "|---|---|---|---|---|---|"]
    lines += [f"| {c['trunk']} | {c['size']} | {c['keras_ms']:.1f} | {c['mtlcore_ms']:.1f} | "
              f"{c['ratio']:.2f}x | {min(c['round_ratios']):.2f}-{max(c['round_ratios']):.2f} |"
              for c in report["head_to_head"]]
  lines += ["", "| ratio | value |", "|---|---|"]
  lines += [f"| {k} | {v:.2f} |" for k, v in report["ratios"].items()]
  return "\n".join(lines)


def _peak_columns(peaks):
  return sorted({(r["n"], r["xla"]) for r in peaks["table"]}, key=lambda c: (c[0], not c[1]))


def console_main():
  cli.bench_main()


if __name__ == "__main__":
  console_main()
