"""Tests of the TensorBoard summaries, read back with TensorBoard's own event reader."""

import numpy as np
import pytest
import tensorflow as tf
from tensorboard.backend.event_processing import event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from tests import fixtures
from tests.binaries import QUICK_TAGGER, TRAIN, run_in_process

SMALL = ["--word_dim=16", "--char_filters=8", "--hidden_size=16", "--steps_per_loop=10",
         "--log_every=20", "--learning_rate=0.01", "--buckets=16,32", *QUICK_TAGGER]


def _scalars(run_dir):
  acc = event_accumulator.EventAccumulator(str(run_dir), size_guidance={"tensors": 0})
  acc.Reload()
  return {tag: [(e.step, float(tf.make_ndarray(e.tensor_proto))) for e in acc.Tensors(tag)]
          for tag in acc.Tags()["tensors"]}


@pytest.fixture(scope="module")
def conll_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("tb")
  data = fixtures.write_dataset(root / "data", train=60, test=10)
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={root / 'm'}",
                      "--mode=alternate", "--train_steps=60", "--eval_every=20",
                      "--lr_decay_start=0.5", "--lm_vocab=0", *SMALL)  # Two tasks, 30 steps each.
  assert result.returncode == 0, result.stderr
  return root / "m"


def test_train_and_eval_runs_hold_finite_scalars_at_increasing_steps(conll_run):
  train, evaluation = _scalars(conll_run / "train"), _scalars(conll_run / "eval")
  for tag in ("pos/loss", "chunk/loss", "pos/accuracy", "throughput/tokens_per_sec",
              "throughput/examples_per_sec", "throughput/step_time_ms",
              "optimizer/learning_rate/pos", "optimizer/learning_rate/chunk", "steps/pos",
              "steps/chunk", "train/nonfinite_steps"):
    assert tag in train, (tag, sorted(train))
  for tag in ("pos/accuracy", "chunk/f1", "chunk/precision", "chunk/recall"):
    assert tag in evaluation, (tag, sorted(evaluation))
  for series in list(train.values()) + list(evaluation.values()):
    steps = [s for s, _ in series]
    assert steps == sorted(set(steps)) and np.all(np.isfinite([v for _, v in series]))
  assert [s for s, _ in evaluation["chunk/f1"]] == [20, 40, 60]
  assert train["steps/pos"][-1][1] + train["steps/chunk"][-1][1] == 60
  # Each task's optimizer holds 0.01 for half of its expected 30 updates, then decays (to 0
  # at 30; the sampler gives one task a few fewer).
  for task in ("pos", "chunk"):
    rates = [v for _, v in train[f"optimizer/learning_rate/{task}"]]
    np.testing.assert_allclose(rates[0], 0.01)
    assert rates == sorted(rates, reverse=True) and rates[-1] < 0.5 * rates[0], rates


def test_hparams_name_the_flags_and_metrics(conll_run):
  acc = event_accumulator.EventAccumulator(str(conll_run))
  acc.Reload()
  content = acc.PluginTagToContent("hparams")
  experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
  names = {h.name for h in experiment.experiment.hparam_infos}
  assert {"mode", "seed", "learning_rate", "xla", "options.trunk", "options.hidden_size",
          "options.dropout"} <= names
  metrics = {(m.name.group, m.name.tag) for m in experiment.experiment.metric_infos}
  assert ("eval", "chunk/f1") in metrics and ("eval", "pos/accuracy") in metrics
  session = plugin_data_pb2.HParamsPluginData.FromString(
      content["_hparams_/session_start_info"])
  assert session.session_start_info.hparams["mode"].string_value == "alternate"


def test_writing_summaries_does_not_change_the_result(tmp_path):
  finals = []
  for flag in ("--summaries", "--nosummaries"):
    model_dir = tmp_path / flag.strip("-")
    result = run_in_process(TRAIN, "--task_set=toy", "--mode=alternate",
                        "--train_steps=200", f"--model_dir={model_dir}", flag)
    assert result.returncode == 0, result.stderr
    path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
    reader = tf.train.load_checkpoint(path)
    finals.append({k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                   if k.endswith("VARIABLE_VALUE")})
  assert (tmp_path / "summaries" / "train").is_dir()
  assert not (tmp_path / "nosummaries" / "train").exists()
  assert finals[0].keys() == finals[1].keys()
  assert any("/m/" in k for k in finals[0]) and len(finals[0]) > 20  # Weights and slots.
  for key in finals[0]:
    np.testing.assert_array_equal(finals[0][key], finals[1][key], err_msg=key)


def test_trace_graph_and_profile_window_write_their_files(tmp_path):
  result = run_in_process(TRAIN, "--task_set=toy", "--train_steps=100",
                      "--steps_per_loop=10", f"--model_dir={tmp_path}", "--trace_graph",
                      "--profile_steps=20,40")
  assert result.returncode == 0, result.stderr
  acc = event_accumulator.EventAccumulator(str(tmp_path / "train"))
  acc.Reload()
  assert "train_loop" in acc.Tags()["tensors"]
  assert acc.SummaryMetadata("train_loop").plugin_data.plugin_name == "graph_run_metadata_graph"
  assert list((tmp_path / "train" / "plugins" / "profile").glob("*/*.xplane.pb"))
