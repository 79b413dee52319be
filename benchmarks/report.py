"""Flags and helpers the benchmark binaries share: where their results go."""

import json

from absl import flags

flags.DEFINE_string("output_json", None, "Write the benchmark's result here as JSON.")
flags.DEFINE_boolean("write_results", False, "Write the benchmark's table into "
                     "benchmarks/RESULTS.md (its own section).")


def write_json(path, data):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2)
