"""The learning-curve study's own parts (benchmarks/studies/sharing.py): its data files, the chunk
passes every setting gets, and its SVG. The study itself is run by hand (RESULTS.md)."""

import math
import xml.etree.ElementTree as ET

from mtlcore.benchmarks.studies import sharing
from mtlcore.tagging.conll2000 import parse_conll
from tests import fixtures


def _sentences(count, seed):
  return parse_conll(fixtures.conll_text(fixtures.synthetic_sentences(count, seed=seed)).encode())


def _read(path):
  return [block.split("\n") for block in open(path, encoding="utf-8").read().strip().split("\n\n")]


def test_the_chunk_subset_is_a_seeded_draw_and_the_joint_file_hides_the_rest(tmp_path):
  train, dev, test = _sentences(60, 0), _sentences(10, 1), _sentences(10, 2)
  files, n = sharing.write_study_files(train, dev, test, 20, 3, str(tmp_path / "a"))
  again, _ = sharing.write_study_files(train, dev, test, 20, 3, str(tmp_path / "b"))
  other, _ = sharing.write_study_files(train, dev, test, 20, 4, str(tmp_path / "c"))
  assert n == 20 and files.pool_size == 60
  chunk = _read(files.chunk)
  assert len(chunk) == 20 and chunk == _read(again.chunk) and chunk != _read(other.chunk)
  partial = _read(files.partial)
  assert len(partial) == 60 and len(_read(files.pool)) == 60
  labelled = [s for s in partial if s[0].split()[2] != "_"]
  assert len(labelled) == 20 and labelled == chunk  # The same 20, in pool order, POS everywhere.
  assert all(line.split()[1] != "_" for s in partial for line in s)
  assert all(all(line.split()[2] == "_" for line in s) for s in partial if s not in chunk)


def test_every_setting_gives_the_chunk_sentences_the_same_passes(tmp_path):
  files, n = sharing.write_study_files(_sentences(100, 0), _sentences(5, 1), _sentences(5, 2),
                                       40, 0, str(tmp_path))
  passes = 10
  chunk_batches = math.ceil(40 / 32)
  _, single = sharing.run_flags_for("chunk_only", None, files, n, passes)
  _, alternate = sharing.run_flags_for("alternate", "uniform", files, n, passes)
  joint_flags, joint = sharing.run_flags_for("joint", "pcgrad", files, n, passes)
  assert single == passes * chunk_batches
  assert alternate == 2 * single  # Uniform: half the steps are chunk steps.
  assert joint == passes * math.ceil(100 / 32)  # Each joint epoch holds each chunk sentence.
  assert "--weighting=pcgrad" in joint_flags and f"--train={files.partial}" in joint_flags
  pos_flags, pos_only = sharing.run_flags_for("pos_only", None, files, n, passes)
  assert pos_only == joint and f"--train={files.pool}" in pos_flags  # POS as many passes.
  assert sharing.run_name("pos_only", None, n) == "pos_only"  # One run for every N.
  assert sharing.run_name("joint", "pcgrad", n) == "40_joint_pcgrad"


def test_the_learning_curve_is_an_svg_with_a_line_and_band_per_setting():
  def runs(f1s):
    return [{"metrics": {"test": {"chunk/f1": f}}} for f in f1s]
  outcomes = {("chunk_only", None, 250): runs([80.0, 81.0]),
              ("chunk_only", None, 1000): runs([86.0, 85.5]),
              ("joint", "sum", 250): runs([85.0, 84.0]),
              ("joint", "sum", 1000): runs([90.0, 90.4])}
  rows = sharing.row_names(["chunk_only", "joint"], ["sum"], ["uniform"])
  svg = sharing.learning_curve_svg(outcomes, [250, 1000], rows, 7936)
  assert "POS labels on all 7936" in svg
  root = ET.fromstring(svg)
  tags = [e.tag.split("}")[-1] for e in root.iter()]
  assert tags.count("polyline") == 2 and tags.count("polygon") == 2


def test_the_table_reports_relative_gains_and_paired_differences():
  def runs(f1s):
    return [{"metrics": {"test": {"chunk/f1": f, "pos/accuracy": 97.0}, "dev": {"chunk/f1": f},
                         "study": {"steps": 100}}, "seconds": 10.0} for f in f1s]
  outcomes = {("chunk_only", None, 250): runs([80.0, 82.0]),
              ("joint", "sum", 250): runs([88.0, 90.0]),
              ("joint", "pcgrad", 250): runs([89.0, 90.5])}
  rows = sharing.row_names(["chunk_only", "joint"], ["sum", "pcgrad"], ["uniform"])
  text = sharing.table(outcomes, [250], rows)
  assert "| 250 | joint | 89.00 ± 1.41 |" in text and "+9.88%" in text  # (89 - 81) / 81
  paired = sharing.paired_differences(outcomes, [250], rows)
  # Differences 1.0 and 0.5: mean 0.75, standard error 0.3536 / sqrt(2) = 0.25.
  assert "| 250 | joint (pcgrad) - joint | +0.75 ± 0.25 | +3.0 | 2 |" in paired


def test_the_relative_gain_is_over_both_single_task_models_and_their_mean():
  def runs(chunk, pos):
    test = [{"chunk/f1": c} if p is None else {"chunk/f1": c, "pos/accuracy": p}
            for c, p in zip(chunk, pos)]
    return [{"metrics": {"test": t, "dev": {"chunk/f1": t.get("chunk/f1", 0.0)},
                         "study": {"steps": 100}}, "seconds": 10.0} for t in test]
  pos_only = [{"metrics": {"test": {"pos/accuracy": 95.0}, "dev": {"pos/accuracy": 95.0},
                           "study": {"steps": 300}}, "seconds": 20.0}] * 2
  outcomes = {("chunk_only", None, 250): runs([80.0, 80.0], [None, None]),
              ("pos_only", None, 250): pos_only,
              ("joint", "sum", 250): runs([88.0, 88.0], [96.9, 96.9])}
  rows = sharing.row_names(["chunk_only", "pos_only", "joint"], ["sum"], ["uniform"])
  text = sharing.table(outcomes, [250], rows)
  # Chunk (88 - 80) / 80 = +10%, POS (96.9 - 95) / 95 = +2%, their mean +6%.
  assert ("| 250 | joint | 88.00 ± 0.00 | 96.90 ± 0.00 | 88.00 ± 0.00 | +10.00% | +2.00% | "
          "+6.00% |") in text
  assert "| 250 | chunk_only | 80.00 ± 0.00 | - | 80.00 ± 0.00 | - | - | - |" in text
  assert "pos_only" not in text  # Not a row per N: one sentence instead.
  assert "test POS accuracy 95.00 ± 0.00, 20 s per run" in sharing.pos_only_line(outcomes, [250])
  assert sharing.chosen_on_dev(outcomes, [250], rows) == ""  # One variant each: nothing chosen.


def test_a_finished_run_is_reused_only_with_the_same_steps(tmp_path):
  run_dir = tmp_path / "1000_joint_sum_seed2"
  run_dir.mkdir()
  (run_dir / "metrics.json").write_text(
      '{"test": {"chunk/f1": 91.0}, "study": {"steps": 9920, "seconds": 300.5}}')
  done = sharing.finished(str(tmp_path), "1000_joint_sum", 2, 9920)
  assert done["metrics"]["test"]["chunk/f1"] == 91.0 and done["seconds"] == 300.5
  assert sharing.finished(str(tmp_path), "1000_joint_sum", 2, 5000) is None  # Other length.
  assert sharing.finished(str(tmp_path), "1000_joint_sum", 1, 9920) is None  # Not run.


def test_the_variant_is_chosen_on_dev_not_on_test():
  def runs(dev, test):
    return [{"metrics": {"dev": {"chunk/f1": d}, "test": {"chunk/f1": t}}}
            for d, t in zip(dev, test)]
  outcomes = {("joint", "sum", 1000): runs([91.0, 91.2], [92.0, 92.0]),
              ("joint", "cagrad", 1000): runs([91.9, 92.1], [91.0, 91.0]),  # Best dev, worst test.
              ("joint", "dwa", 1000): runs([91.5, 91.5], [93.0, 93.0]),
              ("alternate", "uniform", 1000): runs([90.0], [90.0])}  # One variant: no choice.
  rows = sharing.row_names(["alternate", "joint"], ["sum", "cagrad", "dwa"], ["uniform"])
  text = sharing.chosen_on_dev(outcomes, [1000], rows)
  assert "| 1000 | joint | cagrad (92.00) | dwa (91.50) | 3 |" in text
  assert "alternate" not in text


def test_an_architecture_row_trains_that_trunk_with_both_heads_reading_it(tmp_path):
  files, n = sharing.write_study_files(_sentences(100, 0), _sentences(5, 1), _sentences(5, 2),
                                       40, 0, str(tmp_path))
  rows = sharing.row_names(["chunk_only", "alternate", "joint"], ["sum"], ["uniform"],
                           ["hard", "mmoe"])
  assert rows == [("chunk_only", None), ("alternate", "uniform"), ("alternate", "uniform/mmoe"),
                  ("joint", "sum"), ("joint", "sum/mmoe")]
  hard_flags, hard_steps = sharing.run_flags_for("alternate", "uniform", files, n, 10)
  mmoe_flags, mmoe_steps = sharing.run_flags_for("alternate", "uniform/mmoe", files, n, 10)
  assert "--reads=pos:1" in hard_flags
  assert not any(f.startswith("--architecture") for f in hard_flags)
  assert "--architecture=mmoe" in mmoe_flags and "--sampler=uniform" in mmoe_flags
  assert not any(f.startswith("--reads") for f in mmoe_flags)  # Both heads read the mmoe.
  assert mmoe_steps == hard_steps  # The same chunk passes.
  joint_flags, _ = sharing.run_flags_for("joint", "cagrad/cgc", files, n, 10)
  assert "--weighting=cagrad" in joint_flags and "--architecture=cgc" in joint_flags
  assert sharing.run_name("joint", "sum/mmoe", n) == "40_joint_sum_mmoe"
  assert sharing.label("joint", "sum/mmoe") == "joint (mmoe)"
  assert sharing.label("joint", "cagrad/mmoe") == "joint (cagrad, mmoe)"
  assert sharing.label("alternate", "uniform") == "alternate"


def test_architectures_are_compared_with_hard_sharing_and_chosen_on_dev():
  def runs(dev, test):
    return [{"metrics": {"dev": {"chunk/f1": d}, "test": {"chunk/f1": t}}}
            for d, t in zip(dev, test)]
  outcomes = {("alternate", "uniform", 1000): runs([90.0, 90.2], [90.0, 91.0]),
              ("alternate", "uniform/mmoe", 1000): runs([90.5, 90.7], [90.5, 91.0]),
              ("alternate", "uniform/mtan", 1000): runs([89.0, 89.0], [95.0, 95.0])}
  rows = sharing.row_names(["alternate"], ["sum"], ["uniform"], ["hard", "mmoe", "mtan"])
  paired = sharing.paired_differences(outcomes, [1000], rows)
  assert "| 1000 | alternate (mmoe) - alternate | +0.25 ± 0.25 | +1.0 | 2 |" in paired
  chosen = sharing.chosen_on_dev(outcomes, [1000], rows)
  assert "| 1000 | alternate | mmoe (90.60) | uniform, hard sharing (90.10) | 3 |" in chosen


def test_a_conv_study_trains_conv_taggers_in_runs_of_their_own(tmp_path):
  files, n = sharing.write_study_files(_sentences(100, 0), _sentences(5, 1), _sentences(5, 2),
                                       40, 0, str(tmp_path))
  run_flags, _ = sharing.run_flags_for("joint", "sum/mtan", files, n, 10, "conv")
  assert "--trunk=conv" in run_flags and "--architecture=mtan" in run_flags
  assert not any(f.startswith("--trunk") for f in sharing.run_flags_for(
      "joint", "sum", files, n, 10)[0])
  assert sharing.run_name("joint", "sum/mtan", n, "conv") == "conv_40_joint_sum_mtan"
  assert sharing.run_name("pos_only", None, n, "conv") == "conv_pos_only"
