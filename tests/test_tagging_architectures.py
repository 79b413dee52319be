"""The tagger under every architecture (--architecture: moe, mmoe, cgc, ple, cross_stitch,
mtan over the BiLSTM and conv trunks): a step of one task, alternating or joint with the
other task unlabelled, leaves the other task's gates, experts, columns or masks, its head and
its optimizer slots bitwise; the gates are reported per token; and mtl-train trains,
evaluates, exports and mtl-tag serves each architecture."""

import json

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import weighting
from mtlcore.architectures import MixtureSizes, multiply_adds, task_mixture
from mtlcore.choices import ARCHITECTURES
from mtlcore.errors import ConfigError
from mtlcore.evaluation import Evaluator
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.tagging import tagger
from mtlcore.trainers import AlternatingTrainer, JointTrainer
from tests import fixtures
from tests.binaries import QUICK_TAGGER, TAG, TRAIN, run_in_process
from tests.test_tagger import _setup  # The tagger on 64 synthetic sentences, its streams.

SMALL = dict(word_dim=8, char_dim=4, char_filters=4, hidden_size=8, experts=3, expert_size=6)
TASKS = ("pos", "chunk")


def _parts(model, task):
  return [*tf.nest.flatten([m.trainable_variables for m in
                            tf.nest.flatten(model.trunk.task_parts()[task])]),
          *model.heads[task].trainable_variables]


def _slots_untouched(optimizer, variables):
  index = optimizer._index  # pylint: disable=protected-access
  for v in variables:
    if v.ref() in index:
      slot = index[v.ref()]
      assert not optimizer.m[slot].numpy().any() and not optimizer.v[slot].numpy().any(), v.name


# MMoE on the BiLSTM under XLA (the GPU path), the others on the conv trunk without XLA; the
# joint step for the two whose shared parts read task parts (PLE's shared gates, the
# cross-stitch units below the last).
@pytest.mark.parametrize("architecture, trunk, xla, joint", [
    ("mmoe", "bilstm", True, False),
    ("moe", "conv", False, False), ("cgc", "conv", False, False),
    ("ple", "conv", False, True), ("cross_stitch", "conv", False, True),
    ("mtan", "conv", False, False)])
def test_a_step_of_pos_leaves_chunks_parts_head_and_slots_bitwise(architecture, trunk, xla,
                                                                  joint):
  """Alternating (each task its own optimizer, only pos sampled), and joint under PCGrad with
  every chunk label missing: chunk's trunk parts and head stay bitwise and no slot of them
  moves, while pos's parts and the shared layers train."""
  config = tagger.TaggerConfig(trunk=trunk, architecture=architecture, crf=("chunk",),
                               **SMALL)
  model, stream = _setup(config)
  assert set(model.trunk.task_parts()) == (set() if architecture == "moe" else set(TASKS))
  assert model.heads["chunk"].reads == "chunk" and "layer2" not in model.trunk.output_sizes
  tasks = tagger.tagging_tasks(model, TASKS)
  shared = list(model.trunk.layers[-1].trainable_variables)
  kept = _parts(model, "chunk") if architecture != "moe" else \
      list(model.heads["chunk"].trainable_variables)
  moved = shared + (_parts(model, "pos") if architecture != "moe" else [])
  optimizers = {"pos": Adam(1e-2), "chunk": Adam(1e-2)}
  trainers = [AlternatingTrainer(
      model=model, tasks=tasks, optimizers=optimizers, jit_compile=xla,
      datasets={"pos": stream(("pos",), 1), "chunk": stream(("chunk",), 2)},
      sampler=TaskSampler(list(TASKS), [1.0, 0.0], seed=0))]
  if joint:
    trainers.append(JointTrainer(
        model=model, tasks=tasks, optimizer=Adam(1e-2), jit_compile=xla,
        dataset=stream(TASKS, 3).map(
            lambda f, l: (f, {**l, "chunk": -tf.ones_like(l["chunk"])})),
        weighting=weighting.make_weighting("pcgrad", list(TASKS))))
  for trainer in trainers:
    before = [v.numpy().copy() for v in kept]
    moved_before = [v.numpy().copy() for v in moved]
    trainer.train(3)
    for b, v in zip(before, kept):
      np.testing.assert_array_equal(b, v.numpy(), err_msg=v.name)
    for b, v in zip(moved_before, moved):
      assert not np.array_equal(b, v.numpy()), v.name
    _slots_untouched(trainer.optimizer if joint and trainer is trainers[-1]
                     else optimizers["pos"], kept)
  assert not any(m.numpy().any() for m in optimizers["chunk"].m)


def test_the_gates_are_reported_per_real_token():
  config = tagger.TaggerConfig(trunk="conv", architecture="mmoe", **SMALL)
  model, stream = _setup(config)
  features, labels = next(iter(stream(TASKS, 0)))
  gates = model.gate_weights(features)
  tokens = int(tf.reduce_sum(features["length"]))
  assert set(gates) == set(TASKS)
  for w in gates.values():
    assert w.shape == (tokens, 3)
    np.testing.assert_allclose(tf.reduce_sum(w, -1), np.ones(tokens), rtol=1e-6)
  results = Evaluator(model, tagger.tagging_tasks(model, TASKS))(
      tf.data.Dataset.from_tensors((features, labels)))
  for t in TASKS:  # Uniform at the start (zero gate weights): 1/3 per expert.
    assert [round(results[f"gates/{t}/expert_{e}"], 6) for e in range(3)] == [0.333333] * 3


@pytest.mark.parametrize("architecture", ARCHITECTURES[1:])
def test_multiply_adds_count_the_built_modules_weights(architecture):
  sizes = MixtureSizes(experts=4, expert_size=5, levels=3, layers=2, hidden_size=7,
                       shared_experts=2, task_experts=2)
  module = task_mixture(architecture, 11, ("a", "b", "c"), sizes, seed=0)
  weights = sum(int(np.prod(v.shape)) for v in module.trainable_variables
                if len(v.shape) == 2)
  assert multiply_adds(architecture, 11, 3, sizes) == weights


def test_bad_architecture_settings_are_one_line_errors():
  with pytest.raises(ConfigError, match="architecture must be one of"):
    tagger.TaggerConfig(architecture="transformer")
  with pytest.raises(ConfigError, match="experts must be a positive integer, got 0"):
    tagger.TaggerConfig(architecture="mmoe", experts=0)
  with pytest.raises(ConfigError, match="mixture_layers must be a positive integer"):
    tagger.TaggerConfig(architecture="mtan", mixture_layers=0)
  with pytest.raises(ConfigError, match="no task reads it"):
    _setup(tagger.TaggerConfig(architecture="mmoe", reads={"pos": 1, "chunk": 1}, **SMALL))


TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--expert_size=6",
        "--experts=2", "--steps_per_loop=10", "--log_every=10", "--batch_size=8",
        "--buckets=32", "--train_steps=10", "--eval_every=0"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
  directory = tmp_path_factory.mktemp("corpus")
  fixtures.write_columns(directory / "train.txt", fixtures.synthetic_sentences(60, seed=0))
  fixtures.write_columns(directory / "test.txt", fixtures.synthetic_sentences(12, seed=1))
  return directory


@pytest.mark.parametrize("architecture", ARCHITECTURES[1:])
def test_mtl_train_trains_evaluates_exports_and_mtl_tag_serves(corpus, tmp_path, architecture):
  """Each architecture through the binaries (the conv trunk without XLA, alternating for
  half of them, POS reading the first layer for cgc): dev and test scored, gates reported
  for the gated ones, the export served."""
  mode = "alternate" if ARCHITECTURES.index(architecture) % 2 else "joint"
  reads = ["--reads=pos:1"] if architecture == "cgc" else []
  model_dir, export_dir = tmp_path / "run", tmp_path / "export"
  result = run_in_process(
      TRAIN, "--task_set=tagging", "--columns=word,pos,chunk", "--crf=chunk", *QUICK_TAGGER,
      *TINY, *reads, f"--architecture={architecture}", f"--mode={mode}",
      f"--data_dir={corpus}", "--train=train.txt", "--test=test.txt",
      f"--model_dir={model_dir}", f"--export_dir={export_dir}")
  assert result.returncode == 0, result.stderr
  metrics = json.loads((model_dir / "metrics.json").read_text())
  for split in ("dev", "test"):  # Every architecture reports how it mixes (gates/).
    assert {"pos/accuracy", "chunk/f1"} <= set(metrics[split])
    assert any(k.startswith("gates/") for k in metrics[split]), metrics[split]
  tagged = run_in_process(TAG, f"--model={export_dir}", stdin="John has been sold .\n")
  assert tagged.returncode == 0, tagged.stderr
  rows = [line.split() for line in tagged.stdout.splitlines() if line]
  assert len(rows) == 5 and all(len(r) == 3 for r in rows) and rows[0][0] == "John"


def test_the_flop_model_counts_the_architecture_in_place_of_the_top_layer():
  from mtlcore.benchmarks import flops  # pylint: disable=g-import-not-at-top
  sizes = dict(word_dim=8, char_dim=4, char_filters=4, hidden_size=8)
  hard = tagger.TaggerConfig(**sizes)
  mmoe = tagger.TaggerConfig(architecture="mmoe", experts=3, **sizes)
  shape = dict(batch=4, seq_len=10, max_chars=6, num_tags={"pos": 5, "chunk": 7},
               tasks=["pos", "chunk"])
  tokens, h = 40, 8
  top_bilstm = 2 * tokens * (2 * h * 8 * h + h * 8 * h)  # Its input is the first layer's 2h.
  mixture = 2 * tokens * multiply_adds("mmoe", 2 * h, 2, mmoe.mixture_sizes())
  assert (flops.tagger_forward_flops(mmoe, **shape)
          == flops.tagger_forward_flops(hard, **shape) - top_bilstm + mixture)


def test_the_evaluation_runs_the_shared_layers_once_for_predictions_and_gates(monkeypatch):
  config = tagger.TaggerConfig(trunk="conv", architecture="mmoe", **SMALL)
  model, stream = _setup(config)
  features, labels = next(iter(stream(TASKS, 0)))
  expected = model.gate_weights(features)  # The gates on their own (their own pass).
  predictions, gates = model.predictions_and_gates(features, tasks=TASKS)
  for t in TASKS:
    np.testing.assert_allclose(gates[t], expected[t], rtol=1e-6)
    np.testing.assert_allclose(predictions[t], model(features, tasks=TASKS)[t], rtol=1e-6)
  calls = []
  shared = model.trunk._shared
  monkeypatch.setattr(model.trunk, "_shared", lambda *a, **k: calls.append(1) or shared(*a, **k))
  Evaluator(model, tagger.tagging_tasks(model, TASKS))(
      tf.data.Dataset.from_tensors((features, labels)))
  assert len(calls) == 1  # Traced once: one pass through the shared layers, not two.
