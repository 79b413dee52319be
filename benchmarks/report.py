"""What the benchmarks and the studies share: where their results go (--write_results,
--section, JSON files)."""

import json

from absl import flags


flags.DEFINE_boolean("write_results", False, "Write the benchmark's table into "
                     "benchmarks/RESULTS.md (its own section).")
flags.DEFINE_string("section", None, "The RESULTS.md section a study writes (default: the "
                    "study's own, e.g. quality or sharing).")


def write_json(path, data):
  with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2)
