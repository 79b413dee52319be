"""The flags of a run, defined once for every binary, and the RunConfig they describe.

mtl-train reads all of them; mtl-eval, mtl-tag and the benchmarks read the ones they need
(e.g. --model_dir, --data_dir, --batch_size, --trunk) and define only flags of their own with
names no other binary uses, so every binary module imports into one process.

Flags left unset take the task set's defaults. The task set's own options are flags too, made
from its declaration when the binary starts (trainers.cli.task_set_flags); any task set also
takes --task_set_options=KEY=VALUE,... (values read as JSON where they parse, else strings).
"""

from absl import flags

from mtlcore import task_set as task_set_lib
from mtlcore.errors import ConfigError
from mtlcore.choices import PRECISIONS, SAMPLERS, TASK_GRADIENTS, WEIGHTING_OPTIONS, WEIGHTINGS
from mtlcore.trainers.cli import task_set_flags
from mtlcore.trainers import cluster
from mtlcore.trainers.config import MODES, RunConfig

FLAGS = flags.FLAGS

flags.DEFINE_string("task_set", None, "Task set to train: an installed one (listed by --help; "
                    "default: the one installed as the default), or package.module:Name of a "
                    "factory returning a mtlcore.task_set.TaskSet.")
flags.DEFINE_enum("mode", "joint", list(MODES),
                  "joint: one batch, summed losses, one optimizer. alternate: one task per step "
                  "(chosen by the sampler), one optimizer per task. single: train one task.")
flags.DEFINE_list("tasks", None, "Tasks to train (default: all of the task set's); the model "
                  "gets a head for each. --mode=single takes exactly one.")
flags.DEFINE_list("task_weights", None, "Per-task numbers, in --tasks order: loss weights in "
                  "joint mode, sampling probabilities in alternate mode. Default: all equal.")
flags.DEFINE_enum("sampler", None, list(SAMPLERS),
                  "Alternate mode: which task each step trains. uniform (default); proportional "
                  "to each task's corpus; temperature: p ~ size^(1/T); annealed: p ~ size^a, a "
                  "from 1 to 0.2 over training; weighted: --task_weights; round_robin.")
flags.DEFINE_float("sampler_temperature", 2.0, "T of --sampler=temperature.")
flags.DEFINE_enum("weighting", "sum", list(WEIGHTINGS),
                  "Joint mode: how task losses combine. Loss weightings: sum; static "
                  "(--task_weights); uncertainty (Kendall et al. 2018); dwa (Liu et al. 2019, "
                  "period one epoch); gradnorm (Chen et al. 2018); rlw (random, Lin et al. "
                  "2022); imtl_l (Liu et al. 2021); gls (geometric mean, Chennupati et al. 2019); "
                  "famo (Liu et al. 2023); stch (smooth Tchebycheff, Lin et al. 2024). "
                  "Gradient methods (one gradient per task): "
                  "pcgrad (Yu et al. 2020); gradvac (Wang et al. 2021); cagrad (Liu et al. "
                  "2021); upgrad and dualproj (Quinton & Rey 2024); mgda (Sener & Koltun "
                  "2018); imtl_g, and imtl (with imtl_l's scales; Liu et al. 2021); nash_mtl (Navon et al. 2022); fairgrad "
                  "(alpha-fair, Ban & Ji 2024); aligned_mtl (Senushkin et al. 2023); config "
                  "(Liu et al. 2024); graddrop (Chen et al. 2020); db_mtl (Lin & Zhang 2023); moco "
                  "(Fernando et al. 2023); excess_mtl (He et al. 2024); sdmgrad (Xiao et al. 2023) "
                  "and modo (Chen et al. 2023), each from three strided parts of the batch.")
flags.DEFINE_list("weighting_options", None, "NAME=VALUE hyper-parameters of --weighting, "
                  "their papers' defaults otherwise: " + "; ".join(
                      f"{m}: " + ", ".join(f"{k}={v}" for k, v in o.items())
                      for m, o in WEIGHTING_OPTIONS.items()) + ".")
flags.DEFINE_enum("task_gradients", "parameters", list(TASK_GRADIENTS),
                  "Where a gradient method (--weighting=pcgrad ... modo) takes each task's "
                  "gradient: parameters (the trunk's shared variables: one backward pass through "
                  "the trunk per task) or representation (the representation every head reads: "
                  "one backward pass through the trunk in all; LibMTL's rep_grad; with mgda, "
                  "MGDA-UB). One device only.")
flags.DEFINE_boolean("per_task_optimizer", True, "Alternate mode: one Adam per task (each keeps "
                     "its own moments of the shared trunk); false: one Adam shared by all tasks.")
flags.DEFINE_string("init_from", None, "Start a new run from this model directory's trunk, and "
                    "from its heads whose task names and shapes match (the others start fresh).")
flags.DEFINE_boolean("freeze_trunk", False, "No step changes the trunk (e.g. with --init_from: "
                     "train a new head on a trained trunk).")
flags.DEFINE_enum("precision", "fp32", list(PRECISIONS), "The model's compute type; "
                  "variables, losses, metrics and optimizer state stay fp32. fp16 adds dynamic "
                  "loss scaling (for GPUs; this CPU has no fp16 arithmetic).")
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multi_worker"],
                  "tf.distribute strategy: default (one device); mirrored (every local GPU, or "
                  "--num_logical_cpus CPU devices); multi_worker (the machines TF_CONFIG names; "
                  "see BUILD.md). --batch_size is the global batch, split evenly.")
flags.DEFINE_integer("num_logical_cpus", 0, "Split the CPU into this many logical devices "
                     "(e.g. 2 to run --strategy=mirrored on one CPU); 0: leave it whole.")
flags.DEFINE_integer("worker_timeout", 600, "--strategy=multi_worker: seconds to wait for "
                     "every worker to join, and for a peer inside a collective; then exit 1.")
flags.DEFINE_boolean("xla", True, "Compile each training step with XLA (jit_compile=True).")
flags.DEFINE_integer("batch_size", None, "Examples per batch. Default: the task set's; "
                     "mtl-tag: 64.")
flags.DEFINE_float("learning_rate", None, "Adam's base learning rate. Default: the task set's. "
                   "Applied on resume.")
flags.DEFINE_float("lr_decay_start", None, "Fraction of training after which the learning "
                   "rate falls linearly to --lr_final x its base at the last step; 1: constant. "
                   "Default: the task set's.")
flags.DEFINE_float("lr_final", 0.0, "Learning-rate multiplier reached at the last step when "
                   "--lr_decay_start < 1.")
flags.DEFINE_float("average_decay", None, "Evaluate, keep as best and export an exponential "
                   "moving average of the weights with this decay; 0: the weights as trained.")
flags.DEFINE_float("clip_norm", None, "Clip each step's gradients to this global norm; 0: no "
                   "clipping. Default: the task set's.")
flags.DEFINE_integer("train_steps", None, "Total training steps (overrides --epochs).")
flags.DEFINE_float("epochs", None, "Training length in passes over the training data; in "
                   "alternate mode each task gets this many passes. Default: the task set's.")
flags.DEFINE_integer("steps_per_loop", 50, "Steps run inside one tf.function call.")
flags.DEFINE_integer("log_every", 200, "Log progress every this many steps.")
flags.DEFINE_integer("eval_every", None, "Evaluate on the first held-out split every this many "
                     "steps, keeping the best checkpoint; 0: only at the end. Default: the task "
                     "set's.")
flags.DEFINE_string("select_by", "", "Which evaluation is best (best/, metrics.json, the "
                    "export): TASK/METRIC, or delta_m (the mean relative gain over the tasks "
                    "against --select_references). Default: the task set's metric.")
flags.DEFINE_list("select_references", [], "Delta_m's references: KEY=VALUE,... or model "
                  "directories of finished runs (e.g. single-task) whose metrics.json holds "
                  "each task's key.")
flags.DEFINE_boolean("best_per_task", False, "Also keep each task's best checkpoint by its own "
                     "metric in best/TASK/ (mtl-eval --checkpoint=best/TASK); metrics.json "
                     "reports each.")
flags.DEFINE_boolean("checkpoint_iterators", False, "Save each input stream's tf.data "
                     "iterator (shuffle buffers included) in the checkpoint instead of resuming "
                     "it by its position: for a task set's own tf.data sources that are slow or "
                     "unable to skip. Says at start-up what it costs and where it cannot work.")
flags.DEFINE_integer("checkpoint_every", 1000, "Checkpoint every this many steps.")
flags.DEFINE_integer("keep_checkpoints", 3, "Recent training checkpoints kept.")
flags.DEFINE_integer("seed", 0, "Seed of weights, data order, dropout and task sampling.")
flags.DEFINE_boolean("deterministic", False, "Enable TensorFlow op determinism as well, so "
                     "that two runs with the same flags give bitwise-identical variables.")
flags.DEFINE_integer("skip_nonfinite_steps", 0, "Skip (do not apply) up to this many steps "
                     "whose loss or gradient is NaN/Inf; one more stops training with an error.")
flags.DEFINE_string("model_dir", None, "The run's directory: checkpoints, logs, config, "
                    "metrics; training resumes from the latest checkpoint here.")
flags.DEFINE_boolean("summaries", True, "Write TensorBoard summaries (train and eval runs, "
                     "HParams) under --model_dir.")
flags.DEFINE_boolean("trace_graph", False, "Write the training loop's graph to TensorBoard once.")
flags.DEFINE_string("profile_steps", None, "A,B: capture a TensorFlow profiler trace of steps "
                    "A to B into --model_dir/train.")
flags.DEFINE_string("data_dir", None, "Where the task set reads its data (its options' help "
                    "says how).")
flags.DEFINE_string("export_dir", None, "Export the best model as a SavedModel here: a new or "
                    "empty directory, or this run's earlier export (replaced).")
flags.DEFINE_boolean("overwrite", False, "--export_dir (mtl-train), --output (mtl-eval) may "
                     "replace an earlier output of mtlcore's from another run; a directory of "
                     "other files is never replaced.")
flags.DEFINE_list("task_set_options", [], "KEY=VALUE,... options of the task set (values read "
                  "as JSON where they parse).")

# The groups --helpshort lists the flags in (tests/test_binaries_start.py: each flag in one).
HELP_GROUPS = (
    ("The run", ("task_set", "task_set_options", "tasks", "mode", "model_dir", "data_dir", "export_dir",
                 "overwrite", "init_from", "seed", "deterministic")),
    ("Training", ("batch_size", "learning_rate", "lr_decay_start", "lr_final", "epochs",
                  "train_steps", "clip_norm", "average_decay", "task_weights", "sampler",
                  "sampler_temperature", "weighting", "weighting_options", "task_gradients",
                  "per_task_optimizer",
                  "freeze_trunk",
                  "skip_nonfinite_steps", "precision", "xla")),
    ("Devices", ("strategy", "num_logical_cpus", "worker_timeout")),
    ("Logs, evaluation and checkpoints", ("steps_per_loop", "log_every", "eval_every",
                                          "select_by", "select_references", "best_per_task",
                                          "checkpoint_every", "checkpoint_iterators",
                                          "keep_checkpoints", "summaries", "trace_graph",
                                          "profile_steps")),
)


def _numbers(name, values, kind=float):
  try:
    return tuple(kind(v) for v in values)
  except ValueError:
    raise ConfigError(f"--{name} must be numbers, got {list(values)}.") from None


def parse_profile_steps(text):
  """'A,B' -> (A, B); the range is checked by RunConfig."""
  try:
    start, stop = (int(x) for x in text.split(","))
  except ValueError:
    raise ConfigError(f"--profile_steps must be two integers A,B, got {text!r}.") from None
  return start, stop


def define_task_set_flags(argv):
  """Defines the options of the task set argv names (--task_set, else the default) as flags;
  returns its name. Called before the command line is parsed."""
  name = task_set_flags.flag_value(argv, "task_set") or task_set_lib.default_name()
  task_set_flags.define(name)
  return name


def help_groups(groups=None):
  """--help's groups (mtl-train's unless told): the run's flags, then the task set's options;
  the first group's title lists the installed task sets."""
  installed = ", ".join(task_set_lib.installed_names())
  groups = tuple((f"{title} (installed task sets: {installed})", names)
                 if "task_set" in names else (title, names)
                 for title, names in groups or HELP_GROUPS)
  group = task_set_flags.help_group()
  return groups + ((group,) if group else ())


def run_defaults():
  """{flag: default shown by --help} of the run flags whose default is the task set's."""
  declaration = task_set_flags.declaration()
  shown = {"task_set": task_set_flags.defined_name()}
  return {**shown, **(declaration.run_defaults if declaration else {})}


def task_set_options():
  """The task set's options given: --task_set_options, then its option flags."""
  return task_set_flags.given(FLAGS.task_set_options)


def run_config():
  """The RunConfig the flags describe (errors name the flag), and for multi_worker
  TF_CONFIG read now, before TensorFlow starts (trainers.cluster)."""
  config = _run_config()
  if config.strategy == "multi_worker":
    cluster.cluster_role()
  return config


def _run_config():
  return RunConfig(
      task_set=FLAGS.task_set or task_set_lib.default_name(), model_dir=FLAGS.model_dir, mode=FLAGS.mode,
      tasks=tuple(FLAGS.tasks or ()),
      task_weights=_numbers("task_weights", FLAGS.task_weights or ()),
      sampler=FLAGS.sampler, sampler_temperature=FLAGS.sampler_temperature,
      weighting=FLAGS.weighting,
      weighting_options=tuple(FLAGS.weighting_options or ()),
      task_gradients=FLAGS.task_gradients,
      per_task_optimizer=FLAGS.per_task_optimizer, init_from=FLAGS.init_from,
      freeze_trunk=FLAGS.freeze_trunk, precision=FLAGS.precision,
      strategy=FLAGS.strategy, num_logical_cpus=FLAGS.num_logical_cpus,
      worker_timeout=FLAGS.worker_timeout,
      options=task_set_options(), data_dir=FLAGS.data_dir, export_dir=FLAGS.export_dir,
      overwrite=FLAGS.overwrite,
      batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate,
      lr_decay_start=FLAGS.lr_decay_start, lr_final=FLAGS.lr_final,
      average_decay=FLAGS.average_decay, clip_norm=FLAGS.clip_norm,
      train_steps=FLAGS.train_steps, epochs=FLAGS.epochs, xla=FLAGS.xla, seed=FLAGS.seed,
      deterministic=FLAGS.deterministic, skip_nonfinite_steps=FLAGS.skip_nonfinite_steps,
      steps_per_loop=FLAGS.steps_per_loop, log_every=FLAGS.log_every,
      eval_every=FLAGS.eval_every, checkpoint_every=FLAGS.checkpoint_every,
      keep_checkpoints=FLAGS.keep_checkpoints, summaries=FLAGS.summaries,
      trace_graph=FLAGS.trace_graph, select_by=FLAGS.select_by,
      select_references=tuple(FLAGS.select_references or ()),
      best_per_task=FLAGS.best_per_task, checkpoint_iterators=FLAGS.checkpoint_iterators,
      profile_steps=parse_profile_steps(FLAGS.profile_steps) if FLAGS.profile_steps else None)
