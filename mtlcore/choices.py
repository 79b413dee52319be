"""The names a run chooses among, importable without TensorFlow.

The binaries parse and check their flags (trainers.config.RunConfig) before TensorFlow starts,
so a misspelt value costs a fraction of a second, not TensorFlow's start-up; the modules that
implement each choice take their names from here (mtlcore.precision, .sampling, .weighting).
"""

PRECISIONS = ("fp32", "bf16", "fp16")
# The trunk architectures of mtlcore.architectures ("hard": the task set's shared trunk).
ARCHITECTURES = ("hard", "moe", "mmoe", "cgc", "ple", "cross_stitch", "mtan", "dselect_k")
SAMPLERS = ("uniform", "proportional", "temperature", "annealed", "weighted", "round_robin")
WEIGHTINGS = ("sum", "static", "uncertainty", "dwa", "gradnorm", "rlw", "imtl_l", "gls", "famo",
              "pcgrad", "cagrad", "upgrad", "dualproj", "mgda", "imtl_g", "imtl", "nash_mtl",
              "aligned_mtl", "gradvac", "config", "fairgrad", "graddrop", "db_mtl", "stch", "moco",
              "excess_mtl", "sdmgrad", "modo")

# The weightings that combine one gradient per task (mtlcore.weighting: needs_task_gradients).
GRADIENT_METHODS = ("pcgrad", "cagrad", "upgrad", "dualproj", "mgda", "imtl_g", "imtl", "nash_mtl",
                    "aligned_mtl", "gradvac", "config", "fairgrad", "graddrop", "db_mtl",
                    "moco", "excess_mtl", "sdmgrad", "modo")
# The gradient methods that take three independent samples of the task gradients per step
# (the batch split into three): one device, on the parameters.
SAMPLED_GRADIENTS = ("sdmgrad", "modo")
# The gradient methods whose state has a column per shared parameter ([K, P]).
PER_PARAMETER_STATE = ("db_mtl", "moco", "excess_mtl")
# Where a gradient method takes each task's gradient: on the trunk's shared parameters, or on
# the shared representation the heads read (one backward pass through the trunk).
TASK_GRADIENTS = ("parameters", "representation")

# Each weighting's hyper-parameters (--weighting_options=NAME=VALUE,...) and their papers'
# defaults; a method not listed has none.
WEIGHTING_OPTIONS = {
    "dwa": {"temperature": 2.0},
    "gradnorm": {"alpha": 1.5, "learning_rate": 0.025},
    "famo": {"learning_rate": 0.025, "gamma": 0.01},
    "cagrad": {"c": 0.5},
    "upgrad": {"ridge": 1e-6},
    "dualproj": {"ridge": 1e-6},
    "mgda": {"ridge": 1e-6},
    "imtl_g": {"ridge": 1e-6},
    "imtl": {"ridge": 1e-6},
    "nash_mtl": {"ridge": 1e-6, "iterations": 50},
    "fairgrad": {"alpha": 1.0, "ridge": 1e-6, "iterations": 50},
    "aligned_mtl": {"rank_tolerance": 1e-6},
    "gradvac": {"beta": 0.01},
    "config": {"rank_tolerance": 1e-6},
    "graddrop": {"leak": 0.0},
    "db_mtl": {"beta": 0.9, "beta_sigma": 0.0},
    "stch": {"mu": 1.0, "warmup_epochs": 4},
    "moco": {"beta": 0.5, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0},
    "excess_mtl": {"robust_step_size": 0.01},
    "sdmgrad": {"lamda": 0.3, "iterations": 20},
    "modo": {"gamma": 0.001, "rho": 0.1},
}


def weighting_options(method, items):
  """{name: number} for `method` from "NAME=VALUE" strings, over its defaults.

  Raises ValueError with a one-line message naming the option at fault.
  """
  known = WEIGHTING_OPTIONS.get(method, {})
  values = dict(known)
  for item in items:
    name, equals, text = str(item).partition("=")
    if not equals or name not in known:
      listed = ", ".join(known) or "none"
      raise ValueError(f"--weighting_options: {item!r} is not NAME=VALUE for a hyper-parameter "
                       f"of --weighting={method} (it has: {listed}).")
    kind = type(known[name])
    try:
      value = kind(text)
    except ValueError:
      raise ValueError(f"--weighting_options: {name} must be "
                       f"{'an integer' if kind is int else 'a number'}, got {text!r}.") from None
    if value != value or value in (float("inf"), float("-inf")):
      raise ValueError(f"--weighting_options: {name} must be a finite number, got {text!r}.")
    positive = name in ("iterations", "temperature", "mu") or (method, name) == ("fairgrad",
                                                                              "alpha")
    if not (value > 0 if positive else value >= 0):
      raise ValueError(f"--weighting_options: {name} must be "
                       f"{'positive' if positive else 'non-negative'}, got {text!r}.")
    if name in ("beta", "leak") and value > 1:
      raise ValueError(f"--weighting_options: {name} must be in [0, 1], got {text!r}.")
    values[name] = value
  return values
