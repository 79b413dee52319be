"""mtlcore.trainers, the engine: trainers, the outer loop, the model directory, the builder.

Installed as `mtlcore.trainers` (pyproject.toml maps this folder there). It must have exactly
one import name: imported as a top-level `trainers` (e.g. from a checkout on sys.path) it
would be a second copy of every module, and the binaries' absl flags would be defined twice.
"""

if __name__ != "mtlcore.trainers":
  raise ImportError(f"This folder is the package mtlcore.trainers; import it under that name, "
                    f"not as {__name__!r} (pip install -e . maps it).")


def __getattr__(name):
  """AlternatingTrainer and JointTrainer, imported on first use: the binaries import this
  package to parse their flags before TensorFlow starts."""
  if name == "AlternatingTrainer":
    from mtlcore.trainers.alternating import AlternatingTrainer  # pylint: disable=g-import-not-at-top
    return AlternatingTrainer
  if name == "JointTrainer":
    from mtlcore.trainers.joint import JointTrainer  # pylint: disable=g-import-not-at-top
    return JointTrainer
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
