"""The benchmark binaries' flags and entry points: mtl-bench and mtl-compiles.

Like mtl-train's, their flags are defined and checked here, importing no TensorFlow, so a
misspelt flag or a bad value exits with its one line before TensorFlow starts; the measuring
modules (mtlcore.benchmarks.throughput, .compiles) are imported only after that.
"""

import ast
import importlib.util

from absl import flags

from mtlcore.choices import (ARCHITECTURES, GRADIENT_METHODS, PER_PARAMETER_STATE, PRECISIONS,
                             SAMPLED_GRADIENTS, WEIGHTINGS)
from mtlcore.errors import ConfigError
from mtlcore.trainers.cli import common
from mtlcore.tagging.options import TRUNKS
from mtlcore.trainers.cli import flags as run_flags
from mtlcore.trainers.cli import task_set_flags

# The workload both measure: the flagship task set (its option flags, e.g. --lm_vocab, --reads).
TASK_SET = "conll2000"

FLAGS = flags.FLAGS

# mtl-bench
BENCH_MODES = ("joint", "alternate", "pos", "chunk", "default", "default_lm")
EXECUTIONS = ("eager", "function", "xla")
flags.DEFINE_boolean("quick", False, "Tiny sizes and few steps: a smoke run.")
flags.DEFINE_boolean("large", False, "Also time a larger size (2x embeddings and hidden).")
flags.DEFINE_list("trunks", list(TRUNKS), "Trunks to time.")
flags.DEFINE_list("executions", list(EXECUTIONS), "Executions to time.")
flags.DEFINE_list("modes", list(BENCH_MODES),
                  "Training modes to time; default: the joint step with a CRF chunk head and "
                  "word dropout, which Keras cannot express; default_lm: that step with the "
                  "language-model task over --lm_vocab words (mtl-train's default step).")
flags.DEFINE_boolean("keras", True, "Time the Keras model.fit baseline.")
flags.DEFINE_list("precisions", ["fp32"], "Compute types of the mtlcore rows (fp32, bf16, "
                  "fp16: mtl-train's --precision); Keras runs in fp32.")
flags.DEFINE_list("weightings", ["sum"], "Joint-mode weighting methods (mtlcore.weighting) of "
                  "the joint and default rows; each is compared with sum.")
flags.DEFINE_integer("seq_len", 36, "Padded tokens per sentence (a middle CoNLL bucket).")
flags.DEFINE_integer("steps", 60, "Timed steps per configuration.")
flags.DEFINE_integer("steps_per_call", 5, "Steps per call into the compiled loop.")
flags.DEFINE_integer("head_to_head_rounds", 8,
                     "Rounds of the interleaved comparison of Keras fit with the XLA joint "
                     "step (fp32), each --steps/rounds steps of both (at least 2 calls), "
                     "alternating which runs first; 0: none. Runs when Keras, xla, joint and "
                     "fp32 (with sum) are all timed.")
flags.DEFINE_list("task_counts", [],
                  "Instead of the tagger table: time each --weightings method's joint step "
                  "on the synthetic task set at each of these numbers of tasks (e.g. "
                  "2,8,32,64), --head_to_head_rounds interleaved rounds of --steps steps "
                  "(mtlcore.benchmarks.task_scaling).")
flags.DEFINE_boolean("representation_gradients", False,
                     "Time each gradient method of --weightings also with mtl-train's "
                     "--task_gradients=representation, as METHOD/representation (the tagger "
                     "table's joint rows and --task_counts).")
flags.DEFINE_boolean("representation_only", False,
                     "With --representation_gradients: time the gradient methods as "
                     "METHOD/representation only, not also on the parameters (whose K backward "
                     "passes through the trunk make the large-K compiles long).")
flags.DEFINE_list("architectures", [],
                  "Instead of the tagger table: time the synthetic task set's joint and "
                  "alternating steps with each of these trunk architectures (hard, mmoe, cgc, "
                  "ple, cross_stitch, mtan, dselect_k), each sized to hard sharing's parameter "
                  "count, at each --task_counts (default 2) "
                  "(mtlcore.benchmarks.architectures).")
flags.DEFINE_enum("architecture_task_set", "synthetic", ["synthetic", "conll2000"],
                  "--architectures: time them on the synthetic task set, or on the CoNLL-2000 "
                  "tagger (each of --trunks, synthetic batches of --seq_len tokens; at the "
                  "default sizes and sized to hard sharing's parameter count).")
BENCH_FLAGS = ("quick", "task_counts", "representation_gradients", "representation_only",
               "architectures", "architecture_task_set", "large",
               "trunks", "executions", "modes", "keras",
               "precisions", "weightings", "seq_len", "steps", "steps_per_call",
               "head_to_head_rounds", "output_json")

# Both
flags.DEFINE_string("output_json", None, "Write the benchmark's result here as JSON.")


def check_bench_flags():
  """Raises ConfigError naming the first mtl-bench flag with a value it cannot time."""
  for name in ("seq_len", "steps", "steps_per_call"):
    if getattr(FLAGS, name) <= 0:
      raise ConfigError(f"--{name} must be positive, got {getattr(FLAGS, name)}.")
  if FLAGS.batch_size is not None and FLAGS.batch_size <= 0:
    raise ConfigError(f"--batch_size must be positive, got {FLAGS.batch_size}.")
  if FLAGS.head_to_head_rounds < 0:
    raise ConfigError(f"--head_to_head_rounds must be >= 0 (0: none), got "
                      f"{FLAGS.head_to_head_rounds}.")
  if FLAGS.architecture_task_set != "synthetic":
    if not FLAGS.architectures:
      raise ConfigError(f"--architecture_task_set={FLAGS.architecture_task_set} applies to "
                        f"--architectures; give them.")
    if FLAGS.task_counts:
      raise ConfigError("--task_counts: the CoNLL-2000 tagger has its two tasks; drop "
                        "--task_counts or --architecture_task_set.")
  if FLAGS.representation_only and not FLAGS.representation_gradients:
    raise ConfigError("--representation_only applies to --representation_gradients; give "
                      "it.")
  for count in FLAGS.task_counts:
    if not count.isdigit() or not 1 <= int(count) <= 100:
      raise ConfigError(f"--task_counts: {count!r} is not a number of tasks from 1 to 100 "
                        f"(the synthetic inputs' size).")
  for flag, allowed in (("architectures", ARCHITECTURES), ("trunks", TRUNKS),
                        ("executions", EXECUTIONS), ("modes", BENCH_MODES),
                        ("precisions", PRECISIONS),
                        ("weightings", [m for m in WEIGHTINGS if m != "static"])):
    unknown = [v for v in getattr(FLAGS, flag) if v not in allowed]
    if unknown:
      raise ConfigError(f"--{flag}: unknown {unknown}; choose from {list(allowed)}.")


def weighting_rows():
  """--weightings, then with --representation_gradients each gradient method again as
  METHOD/representation (mtl-train's --task_gradients=representation; not the methods whose
  state is per parameter, choices.PER_PARAMETER_STATE, nor those of three samples,
  choices.SAMPLED_GRADIENTS); with --representation_only those methods as
  METHOD/representation alone."""
  on_representation = [m for m in FLAGS.weightings if m in GRADIENT_METHODS
                       and m not in PER_PARAMETER_STATE + SAMPLED_GRADIENTS]
  methods = list(FLAGS.weightings)
  if FLAGS.representation_only:  # Those methods on the representation only.
    methods = [m for m in methods if m not in on_representation]
  if FLAGS.representation_gradients:
    methods += [f"{m}/representation" for m in on_representation]
  return methods


def _bench():
  check_bench_flags()
  common.start_tensorflow()
  if FLAGS.architectures:
    from mtlcore.benchmarks import architectures  # pylint: disable=g-import-not-at-top
    if FLAGS.architecture_task_set == "conll2000":
      return architectures.run_tagger(
          FLAGS.architectures, FLAGS.trunks, steps=FLAGS.steps,
          rounds=max(FLAGS.head_to_head_rounds, 1), batch_size=FLAGS.batch_size or 32,
          seq_len=FLAGS.seq_len)
    return architectures.run(FLAGS.architectures, [int(k) for k in FLAGS.task_counts or [2]],
                             steps=FLAGS.steps, rounds=max(FLAGS.head_to_head_rounds, 1),
                             batch_size=FLAGS.batch_size or 64)
  if FLAGS.task_counts:
    from mtlcore.benchmarks import task_scaling  # pylint: disable=g-import-not-at-top
    return task_scaling.run([int(k) for k in FLAGS.task_counts], weighting_rows(),
                            steps=FLAGS.steps, rounds=max(FLAGS.head_to_head_rounds, 1),
                            batch_size=FLAGS.batch_size or 64)
  from mtlcore.benchmarks import throughput  # pylint: disable=g-import-not-at-top
  return throughput.run()


def _compiles():
  config = run_flags.run_config()  # Checked before TensorFlow starts.
  if config.task_set != TASK_SET:
    raise ConfigError(f"mtl-compiles measures the {TASK_SET} task set; drop --task_set.")
  common.start_tensorflow()
  from mtlcore.benchmarks import compiles  # pylint: disable=g-import-not-at-top
  return compiles.main(config)


def _usage(module):
  """`module`'s docstring, read from its source without importing it (and TensorFlow)."""
  with open(importlib.util.find_spec(module).origin, encoding="utf-8") as f:
    return ast.get_docstring(ast.parse(f.read())) or ""


def bench_main():
  """mtl-bench's console entry point (its usage: mtlcore.benchmarks.throughput's docstring)."""
  common.run("mtl-bench", _bench, usage=_usage("mtlcore.benchmarks.throughput"), help_groups=(
      ("mtl-bench", BENCH_FLAGS),
      ("mtl-train's flags it reads", ("batch_size", "lm_vocab", "reads", "strategy",
                                      "num_logical_cpus"))),
      prepare=lambda argv: task_set_flags.define(TASK_SET))


def compiles_main():
  """mtl-compiles' console entry point (its usage: mtlcore.benchmarks.compiles' docstring)."""
  common.run("mtl-compiles", _compiles, usage=_usage("mtlcore.benchmarks.compiles"),
             help_groups=lambda: (("mtl-compiles", ("output_json",)), *run_flags.help_groups()),
             prepare=lambda argv: task_set_flags.define(TASK_SET),
             defaults=run_flags.run_defaults)
