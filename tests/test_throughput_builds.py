"""mtl-bench times exactly the steps mtl-train runs: the same builder, the same objects."""

import numpy as np
import pytest
from absl import flags as absl_flags

from mtlcore.benchmarks import throughput
from mtlcore.trainers import build
from mtlcore.trainers.cli import flags as run_flags
from tests import fixtures

OPTIONS = dict(word_dim=8, char_filters=4, hidden_size=8, crf=(), word_dropout=0.0,
               reads={"pos": 1}, trunk="bilstm")
MODES = {"joint": ["--mode=joint"], "alternate": ["--mode=alternate"],
         "pos": ["--mode=single", "--tasks=pos"], "chunk": ["--mode=single", "--tasks=chunk"]}


def _train_config(data_dir, mode):
  """The RunConfig mtl-train builds from the flags a user would give for this bench row."""
  argv = ["mtl-train", f"--data_dir={data_dir}", "--model_dir=unused", "--batch_size=8",
          "--train_steps=600", "--crf=", "--word_dropout=0", "--lm_vocab=0", "--word_dim=8",
          "--char_filters=4", "--hidden_size=8", *MODES[mode]]
  try:
    run_flags.define_task_set_flags(argv)
    absl_flags.FLAGS(argv)
    return run_flags.run_config()
  finally:
    absl_flags.FLAGS.unparse_flags()


def _variables(trainer):
  return list(trainer.variables)


@pytest.mark.parametrize("mode", list(MODES))
def test_bench_and_train_build_the_same_step_and_it_moves_the_same_variables(tmp_path, mode):
  data_dir = fixtures.write_dataset(tmp_path / "data", train=60, test=10)
  resolved = build.resolve(_train_config(data_dir, mode))
  config, task_set = resolved.config, resolved.task_set
  data = task_set.load_data(config.data_dir)
  model, tasks = build.build_model(config, task_set, assets_dir=str(tmp_path), data=data)
  streams = build.make_streams(config, task_set, data)
  trained = build.build_trainer(config, model=model, tasks=tasks, streams=streams,
                                total_steps=build.total_steps(config, streams))

  bench_config = throughput.bench_config(mode, options=OPTIONS, jit_compile=True,
                                         batch_size=8, steps=60)
  benched = throughput.build_bench_trainer(
      bench_config, lambda t: streams[t[0] if len(t) == 1 and mode == "alternate" else "joint"]
      .make_dataset(0), vocabularies=task_set.vocabularies)

  assert type(benched) is type(trained)
  assert set(benched.step_functions()) == set(trained.step_functions())
  for name, optimizer in trained.optimizer_map().items():
    other = benched.optimizer_map()[name]
    assert type(other) is type(optimizer) and other.name == optimizer.name
    assert float(other.learning_rate.numpy()) == float(optimizer.learning_rate.numpy())
    assert type(other.schedule) is type(optimizer.schedule)
  assert benched.clip_norm == trained.clip_norm
  assert [(v.name, v.shape) for v in _variables(benched)] == [
      (v.name, v.shape) for v in _variables(trained)]

  # Same state, same batch, one step of each step function: the same variables after it.
  for source, target in zip(_variables(trained), _variables(benched)):
    target.assign(source)
  features, labels = next(iter(streams[next(iter(streams))].make_dataset(0)))
  step_name = next(iter(trained.step_functions()))
  for trainer in (trained, benched):
    trainer.step_functions()[step_name](features, labels)
  for a, b in zip(_variables(trained), _variables(benched)):
    np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
  graphs = [sorted(op.type for op in t.step_functions()[step_name]
                   .get_concrete_function(features, labels).graph.get_operations())
            for t in (trained, benched)]
  assert graphs[0] == graphs[1]
  assert trained.step_trace_counts() == benched.step_trace_counts()
  assert trained.step_trace_counts()[step_name] == 1


def test_interleaving_alternates_the_order_and_drops_each_blocks_first_timing():
  calls = []

  def fake(name, seconds):
    def steps(n):
      calls.append(name)
      return np.full(n, seconds)
    return steps

  times, per_round = throughput.interleave({"keras": fake("keras", 0.09),
                                            "mtlcore": fake("mtlcore", 0.03)},
                                           rounds=4, block=5)
  assert calls == ["keras", "mtlcore", "mtlcore", "keras"] * 2  # Reversed every other round.
  assert [len(t) for t in times.values()] == [16, 16]  # Each block's first timing dropped.
  assert per_round == [{"keras": 0.09, "mtlcore": 0.03}] * 4
  contest = {"trunk": "bilstm", "size": "default", "ratio": 3.0}
  assert throughput.ratios([], [contest]) == {
      "bilstm/default/xla/fp32: joint tokens/s vs keras fit, interleaved": 3.0}
