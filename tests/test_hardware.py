"""The machine's limit as mtl-bench measures it: matmul peaks per precision, a training row
above the peak of its own precision rejected as a wrong measurement, and the heavy ops timed
in both precisions."""

import pytest

from mtlcore.benchmarks import hardware
from mtlcore.errors import MtlError
from mtlcore.tagging.tagger import TaggerConfig


def _row(gflops, precision="fp32"):
  return {"trunk": "conv", "execution": "xla", "mode": "joint", "gflops": gflops,
          "precision": precision}


def test_a_row_above_the_peak_of_its_precision_is_rejected():
  peak = {"fp32": 400.0, "bf16": 800.0}
  hardware.check_below_peak([_row(399.0), _row(790.0, "bf16")], peak)
  with pytest.raises(MtlError, match="above the measured fp32 matmul peak, e.g. conv xla "
                     "joint: 412 GFLOP/s against a peak of 400"):
    hardware.check_below_peak([_row(100.0), _row(412.0)], peak)
  with pytest.raises(MtlError, match="bf16"):
    hardware.check_below_peak([_row(801.0, "bf16")], peak)


def test_peaks_cover_every_size_precision_and_compilation():
  peaks = hardware.matmul_peaks((64, 128), trials=1)
  cells = {(r["precision"], r["n"], r["xla"]) for r in peaks["table"]}
  assert cells == {(p, n, x) for p in ("fp32", "bf16") for n in (64, 128) for x in (True, False)}
  for precision, best in peaks["peak"].items():
    assert best == max(r["gflops"] for r in peaks["table"]
                       if r["precision"] == precision and r["gflops"])
  assert peaks["peak"]["fp32"] > 0


def test_op_speeds_time_every_heavy_op_in_both_precisions_with_and_without_xla():
  config = TaggerConfig(word_dim=4, char_dim=4, char_filters=4, hidden_size=4)
  ops = hardware.heavy_ops(config, batch=2, seq_len=5, max_chars=3)
  assert len(ops) == 3
  table = hardware.op_speeds(ops, trials=1)
  assert {(r["op"], r["precision"], r["xla"]) for r in table} == {
      (op, p, x) for op in ops for p in ("fp32", "bf16") for x in (False, True)}
  assert all(r["ms"] > 0 for r in table)
