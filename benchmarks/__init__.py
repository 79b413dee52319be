"""mtlcore.benchmarks: throughput, compile counts and quality studies; RESULTS.md.

Installed as `mtlcore.benchmarks` (pyproject.toml maps this folder there); like
mtlcore.trainers it refuses a second, top-level import name.
"""

if __name__ != "mtlcore.benchmarks":
  raise ImportError(f"This folder is the package mtlcore.benchmarks; import it under that "
                    f"name, not as {__name__!r} (pip install -e . maps it).")
