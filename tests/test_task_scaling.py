"""mtl-bench --task_counts (mtlcore.benchmarks.task_scaling): every (K, method) step is built,
compiled and timed in interleaved rounds, and the table reports ratios to sum and growth, and
a gradient method's aggregation alone on rows of the shape its step gave it."""

from mtlcore.benchmarks import task_scaling


def test_each_configuration_is_timed_every_round_and_the_table_has_ratios_and_growth():
  sizes = {"input_dim": 8, "hidden_size": 4, "num_examples": 64}
  results = task_scaling.measure([2, 3], ["sum", "mgda"], steps=2, rounds=3, batch_size=8,
                                 sizes=sizes)
  assert sorted(results) == [(2, "mgda"), (2, "sum"), (3, "mgda"), (3, "sum")]
  for value in results.values():
    assert len(value["ms"]) == 3 and all(ms > 0 for ms in value["ms"])
    assert value["compile_s"] > 0
  assert results[(2, "sum")]["rows"] is None and "aggregation_ms" not in results[(2, "sum")]
  # mgda's rows: one per task over the shared layer's 8 x 4 + 4 parameters.
  assert results[(3, "mgda")]["rows"] == (3, 36)
  assert len(results[(3, "mgda")]["aggregation_ms"]) == 5
  assert all(ms > 0 for ms in results[(3, "mgda")]["aggregation_ms"])
  assert len(task_scaling.dispatch_ms(3)) == 3
  lines = task_scaling.table(results, [2, 3], ["sum", "mgda"])
  assert lines[2].startswith("| 2 | sum |") and lines[2].split("|")[4].strip() == "1.00"
  assert lines[2].split("|")[6:9] == [" - ", " - ", " - "]
  row = lines[5].split("|")
  assert row[1:3] == [" 3 ", " mgda "] and row[6].strip() == "3 x 36" and row[8].endswith("% ")
  assert any(l.startswith("| mgda |") for l in lines)  # The growth table, K=3 over K=2.


def test_representation_only_times_the_gradient_methods_on_the_representation_alone():
  from absl import flags  # pylint: disable=g-import-not-at-top
  from absl.testing import flagsaver  # pylint: disable=g-import-not-at-top
  from mtlcore.benchmarks import cli  # pylint: disable=g-import-not-at-top
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  methods = ["sum", "mgda", "famo", "db_mtl"]  # db_mtl's state is per parameter: it stays.
  with flagsaver.flagsaver(weightings=methods, representation_gradients=True):
    assert cli.weighting_rows() == methods + ["mgda/representation"]
    with flagsaver.flagsaver(representation_only=True):
      assert cli.weighting_rows() == ["sum", "famo", "db_mtl", "mgda/representation"]
