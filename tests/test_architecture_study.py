"""The architectures' parameter matching (mtl-bench --architectures and the synthetic study)
and the study's report: the size found by bisection is the one whose parameter count is
nearest the target, and dev, not test, names the preferred architecture."""

import pytest

from mtlcore.benchmarks import architectures as sizing
from mtlcore.benchmarks.studies import architectures as study


@pytest.mark.parametrize("architecture", ["hard", "moe", "cgc", "ple", "cross_stitch", "mtan"])
def test_each_architecture_is_sized_to_mmoes_parameter_count(architecture):
  target = sizing.parameter_count("mmoe", 2, 16)
  size, params = sizing.matched_size(architecture, 2, target)
  assert params == sizing.parameter_count(architecture, 2, size)
  for other in (size - 1, size + 1):
    assert abs(params - target) <= abs(sizing.parameter_count(architecture, 2, other) - target)
  assert abs(params - target) <= 0.03 * target, (size, params, target)


def test_a_run_scores_both_splits_at_every_point_and_dev_makes_the_choice():
  run = study.one_run("mmoe", 0.5, 0, size=4, steps=20, points=2, learning_rate=1e-3)
  assert run["steps"] == [10, 20] and len(run["dev"]) == len(run["test"]) == 2
  assert all(v > 0 for v in run["dev"] + run["test"])
  fake = lambda dev, test: {"steps": [1], "dev": [dev], "test": [test], "seconds": 1.0}
  runs = {(0.5, "hard"): [fake(1.0, 1.0), fake(1.0, 1.0)],
          (0.5, "mmoe"): [fake(2.0, 0.5), fake(2.0, 0.5)]}  # Better on test, worse on dev.
  lines = study.report(runs, [0.5], ["hard", "mmoe"], {"hard": ("h=1", 10), "mmoe": ("e=1", 10)})
  assert ("| 0.5 | mmoe | e=1 | 10 | 0.5000 ± 0.0000 | 0.500 ± 0.000 | 2.0000 ± 0.0000 |"
          in lines)
  assert lines[-1] == "- p = 0.5: dev prefers **hard** (final dev loss 1.0000)."
  assert study.curves_svg(runs, [0.5], ["hard", "mmoe"]).startswith("<svg")


def test_a_tagger_architecture_is_sized_to_the_hard_taggers_parameter_count():
  target = sizing.tagger_parameter_count("hard", "conv")
  size, params = sizing.tagger_matched_size("cgc", "conv", target)
  assert params == sizing.tagger_parameter_count("cgc", "conv", size)
  for other in (size - 1, size + 1):
    assert abs(params - target) <= abs(sizing.tagger_parameter_count("cgc", "conv", other) - target)
  assert sizing.tagger_options("hard", "conv")["reads"] == {"pos": 1}  # The default tagger.
  options = sizing.tagger_options("cgc", "conv", size)
  assert options["reads"] == {} and options["architecture"] == "cgc"  # Both heads read it.
  assert options["crf"] == ("chunk",)  # The step mtl-train runs.
