"""The names a run chooses among, importable without TensorFlow.

The binaries parse and check their flags (trainers.config.RunConfig) before TensorFlow starts,
so a misspelt value costs a fraction of a second, not TensorFlow's start-up; the modules that
implement each choice take their names from here (mtlcore.precision, .sampling, .weighting).
"""

PRECISIONS = ("fp32", "bf16", "fp16")
SAMPLERS = ("uniform", "proportional", "temperature", "annealed", "weighted", "round_robin")
WEIGHTINGS = ("sum", "static", "uncertainty", "dwa", "gradnorm", "pcgrad", "cagrad", "upgrad")
