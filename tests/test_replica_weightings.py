"""Every way of weighting under tf.distribute: `python -m tests.replica_check methods` (a
subprocess: it splits the CPU into 2 logical devices before TensorFlow starts) trains 3
synthetic tasks on an MMoE trunk mirrored over 2 replicas and on one device on the global
batch, with partial labels, for one method of each way (tests/replica_check.py, `methods`).
A file of its own, so that a second pytest worker runs it beside test_replicas.py's checks."""

import json
import subprocess
import sys

import pytest


@pytest.fixture(scope="module")
def results():
  result = subprocess.run([sys.executable, "-m", "tests.replica_check", "methods", "unused"],
                          capture_output=True, text=True, timeout=900, check=False)
  assert result.returncode == 0, result.stderr
  (line,) = [l for l in result.stdout.splitlines() if l.startswith("{")]
  return json.loads(line)


# tests/replica_check.py's METHODS (not imported: importing it splits this process's CPU).
@pytest.mark.parametrize("method", ["uncertainty", "famo", "gradnorm", "imtl", "db_mtl",
                                    "sdmgrad"])
def test_every_way_of_weighting_mirrored_equals_one_device_with_partial_labels(method, results):
  """Mirrored over 2 replicas, 3 tasks on an MMoE trunk, one task unlabelled in half of one
  step and in all of another: every model and weighting variable and the logged weights
  equal one device's on the global batch (up to float32 summation order), and every
  replica holds one value of each (db_mtl's [K, P] averages too; sdmgrad's simplex weights,
  from three strided parts of each replica's batch). A gradient method's aggregation is a
  compiled function of its own in the cross-replica part, traced once."""
  diff, scale, weight_diff, copies_diff, aggregation_traces = results[method]
  assert diff <= 1e-5 * max(scale, 1.0) and weight_diff <= 1e-5, results[method]
  assert copies_diff == 0.0, results[method]
  assert aggregation_traces == (1 if method in ("imtl", "db_mtl", "sdmgrad") else 0)
