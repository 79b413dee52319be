"""The study the original tutorial promised: is training POS and chunking together better?
And what the default run scores, with and without the auxiliary language-model task.

  python3 -m mtlcore.benchmarks.studies.quality --data_dir=../shared/data/conll2000 --seeds=0,1,2 \
      --epochs=30 --work_dir=runs/quality
  python3 -m mtlcore.benchmarks.studies.quality --data_dir=../shared/data/conll2000 --seeds=0,1,2 \
      --settings=default,default_without_lm --section=default_quality --write_results

Trains on CoNLL-2000 (a) jointly, (b) alternately, (c) separately (a POS-only and a
chunk-only model), each with every seed and the same number of examples seen per task (the
same --epochs for every model; alternate mode takes twice the steps, one task per step). Each
run is an ordinary `mtl-train` subprocess, so what is measured is what a user gets. Reports
mean +- std of test chunk F1 and POS accuracy (of the best-on-dev checkpoint), the dev curve
of the selection metric and the wall time, as a Markdown table written into
benchmarks/RESULTS.md (section "quality", or --section), with the command, machine and date.
A run that an earlier invocation finished in --work_dir with the same flags is reused, not
trained again, so an interrupted invocation resumes; its wall time is the one it took then.
Reuse goes by the flags, not the code: after changing the code, give a fresh --work_dir (the
report names the commit each run was trained with).

The settings `default` and `default_without_lm` are the README's mtl-train command as it is
(the task set's epochs; --epochs does not apply) and the same with --lm_vocab=0.
"""

import datetime
import os
import statistics
import sys

from absl import flags
from tensorboard.backend.event_processing import event_accumulator
import tensorflow as tf

# report and the run flags define --write_results, --data_dir and --epochs.
from mtlcore.benchmarks import hardware, report, results  # pylint: disable=unused-import
from mtlcore.benchmarks.studies import runs as study_runs
from mtlcore.errors import ConfigError
from mtlcore.trainers.cli import common
from mtlcore.trainers.model_dir import ModelDir
from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=unused-import

FLAGS = flags.FLAGS
flags.DEFINE_string("work_dir", "runs/quality", "Where the runs' model directories go.")
flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; every setting is trained with each.")
flags.DEFINE_list("settings", ["joint", "alternate", "separate"], "Which settings to train.")
flags.DEFINE_list("extra_flags", [], "More flags for every mtl-train run, e.g. --trunk=conv.")
DEFAULT_EPOCHS = 30.0

# POS and chunking only: the language-model task (on by default) would be in the joint and
# alternate runs and in neither separate one.
RUNS = {"joint": [("joint", ["--mode=joint", "--lm_vocab=0"])],
        "alternate": [("alternate", ["--mode=alternate", "--lm_vocab=0"])],
        "separate": [("pos_only", ["--mode=single", "--tasks=pos", "--lm_vocab=0"]),
                     ("chunk_only", ["--mode=single", "--tasks=chunk", "--lm_vocab=0"])],
        "default": [("default", [])],
        "default_without_lm": [("default_without_lm", ["--lm_vocab=0"])]}
AS_IS = ("default", "default_without_lm")  # The README command: the task set's epochs.


def train(name, seed, flags_for_run):
  model_dir = os.path.join(FLAGS.work_dir, f"{name}_seed{seed}")
  epochs = [] if name in AS_IS else [f"--epochs={FLAGS.epochs or DEFAULT_EPOCHS}"]
  args = [f"--seed={seed}", *epochs, *flags_for_run, *FLAGS.extra_flags]
  if FLAGS.data_dir:
    args.append(f"--data_dir={FLAGS.data_dir}")
  done = study_runs.train_once(model_dir, args, "quality", {"args": args})
  return {**done, "curve": dev_curve(model_dir)}


def dev_curve(model_dir):
  """[(step, chunk F1 or POS accuracy on dev)] from the run's eval summaries."""
  acc = event_accumulator.EventAccumulator(ModelDir(model_dir).eval_run,
                                           size_guidance={"tensors": 0})
  acc.Reload()
  tag = "chunk/f1" if "chunk/f1" in acc.Tags()["tensors"] else "pos/accuracy"
  return [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]


def table(outcomes):
  """outcomes: setting -> list over seeds of {run name: train() result}."""
  lines = ["| setting | test chunk F1 | test POS acc. | dev chunk F1 | dev POS acc. | "
           "wall time per seed (s) | dev curve, seed 0 (step: chunk F1 or POS acc.) |",
           "|---|---|---|---|---|---|---|"]
  for setting, per_seed in outcomes.items():
    def values(split, key):
      return [r["metrics"][split][key] for seed_runs in per_seed for name, r in seed_runs.items()
              if key in r["metrics"][split]]
    seconds = [sum(r["seconds"] for r in seed_runs.values()) for seed_runs in per_seed]
    curve_run = per_seed[0].get("chunk_only") or next(iter(per_seed[0].values()))
    curve = " ".join(f"{s}:{v:.1f}" for s, v in curve_run["curve"][::2])
    lines.append(f"| {setting} | {study_runs.mean_std(values('test', 'chunk/f1'))} | "
                 f"{study_runs.mean_std(values('test', 'pos/accuracy'))} | "
                 f"{study_runs.mean_std(values('dev', 'chunk/f1'))} | "
                 f"{study_runs.mean_std(values('dev', 'pos/accuracy'))} | "
                 f"{statistics.mean(seconds):.0f} | {curve} |")
  return "\n".join(lines)


def run():
  unknown = [s for s in FLAGS.settings if s not in RUNS]
  if unknown:
    raise ConfigError(f"--settings: unknown {unknown}; choose from {list(RUNS)}.")
  try:
    seeds = [int(s) for s in FLAGS.seeds]
  except ValueError:
    raise ConfigError(f"--seeds must be integers, got {FLAGS.seeds}.") from None
  outcomes = {}
  for setting in FLAGS.settings:
    outcomes[setting] = [{name: train(name, seed, flags_for_run)
                          for name, flags_for_run in RUNS[setting]} for seed in seeds]
    print(f"{setting}: done", flush=True)
  device = hardware.describe_device()
  as_is = all(s in AS_IS for s in FLAGS.settings)
  code = study_runs.code_versions(result for per_seed in outcomes.values() for runs in per_seed
                              for result in runs.values())
  title = ("The default run, with and without the language-model task" if as_is
           else "Jointly vs alternately vs separately")
  length = ("the task set's epochs (the README command)" if as_is else
            f"{FLAGS.epochs or DEFAULT_EPOCHS:g} epochs per task")
  text = "\n".join([
      f"## {title} (CoNLL-2000)", "",
      f"Generated by `python3 -m mtlcore.benchmarks.studies.quality {' '.join(sys.argv[1:])}` on "
      f"{datetime.date.today().isoformat()}, {device['device']} {device['name']} "
      f"({device.get('cores', '')} cores), TensorFlow {device['tensorflow']}. Seeds {seeds}, "
      f"{length}; test scores are those of each run's best-on-dev checkpoint; POS-only runs "
      f"give the separate setting's POS column, chunk-only runs its chunk column. Code that "
      f"trained the runs: {code}.", "",
      table(outcomes)])
  print(text)
  if FLAGS.write_results:
    results.replace_section(FLAGS.section or "quality", text)
  return outcomes


def console_main():
  common.run("quality", run)


if __name__ == "__main__":
  console_main()
