"""Evaluation by the engine (mtlcore.evaluation) and the in-memory task set on task kinds
(mtlcore.in_memory): results independent of the batching, one trace, state that does not
grow with the split, the same numbers as the training logs' metrics; load-time checks that
name the corpus; and a step without one labelled unit that changes nothing."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import batching
from mtlcore.errors import ConfigError
from mtlcore.evaluation import Evaluator
from mtlcore.in_memory import InMemoryTaskSet
from mtlcore.layers import Linear
from mtlcore.model import SharedTrunk
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.task_kinds import Classification, MultiLabel, Regression
from mtlcore.trainers import AlternatingTrainer, JointTrainer


class Trunk(SharedTrunk):
  def __init__(self, seed):
    super().__init__(name="trunk")
    self.layer = Linear(4, 8, seed=seed, name="layer")
    self.output_sizes = {"hidden": 8}

  def __call__(self, features, *, training, seed):
    return {"hidden": tf.nn.relu(self.layer(features["x"]))}


def _corpus(n, seed, missing=0.3):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  labels = {"value": x.sum(1).astype(np.float32),
            "kind": (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0),
            "flags": (x[:, :2] > 0).astype(np.int32)}
  labels["value"][rng.random(n) < missing] = np.nan
  labels["kind"][rng.random(n) < missing] = -1
  labels["flags"][rng.random((n, 2)) < missing] = -1
  return {"x": x}, labels


class Small(InMemoryTaskSet):
  kinds = {"value": Regression(), "kind": Classification(3), "flags": MultiLabel(2)}
  splits = ("dev",)

  def trunk(self, seed):
    return Trunk(seed)

  def arrays(self, data_dir):
    return {"train": _corpus(64, 0), "kind": _corpus(40, 1), "dev": _corpus(100, 2)}


@pytest.fixture(scope="module")
def small():
  task_set = Small()
  data = task_set.load_data(None)
  model = task_set.build_model(task_set.task_names, seed=3, assets_dir=None)
  return task_set, data, model


def test_results_do_not_depend_on_the_batching_and_trace_once(small):
  task_set, data, model = small
  evaluator = Evaluator(model, task_set.make_tasks(model, task_set.task_names))
  by_batch = {size: evaluator(task_set.eval_dataset(data, task_set.task_names, "dev",
                                                    batch_size=size))
              for size in (7, 100, 33)}
  for size in (7, 33):
    assert by_batch[size].keys() == by_batch[100].keys()
    for key, value in by_batch[100].items():
      assert by_batch[size][key] == pytest.approx(value, rel=1e-5, abs=1e-6), key
  assert evaluator._statistics.experimental_get_tracing_count() <= 2  # pylint: disable=protected-access
  assert {"value/loss", "value/mae", "value/rmse", "kind/accuracy", "kind/macro_f1",
          "flags/average_precision"} <= by_batch[100].keys()


@pytest.mark.parametrize("architecture", ["mmoe", "ple"])
def test_a_trunks_gates_are_reported_as_their_mean_weight_per_expert(architecture):
  """Each gate (MMoE's per task; PLE's per task and level, and the shared ones) as
  gates/GATE/expert_E: its mean weight over the split, whatever the batching."""
  from mtlcore.synthetic.task_set import SyntheticTaskSet  # pylint: disable=g-import-not-at-top
  task_set = SyntheticTaskSet({"num_tasks": 2, "input_dim": 6, "num_examples": 64,
                               "architecture": architecture, "experts": 3, "expert_size": 4})
  names = list(task_set.task_names)
  model = task_set.build_model(names, seed=0, assets_dir=None)
  trunk = model.trunk
  gates = trunk.gate_weights({"x": tf.zeros([1, 6])})
  for gate in (trunk.gates.values() if architecture == "mmoe" else
               [g for level in trunk.levels for g in [*level.task_gates.values(),
                                                      level.shared_gate] if g is not None]):
    gate.w.assign(tf.random.stateless_normal(gate.w.shape, seed=[1, 2]))  # Not uniform.
  data = task_set.load_data(None)
  x = data["dev"][0]["x"]
  results = Evaluator(model, task_set.make_tasks(model, names))(
      task_set.eval_dataset(data, names, "dev", batch_size=300))
  for name, weights in trunk.gate_weights({"x": x}).items():
    means = [results[f"gates/{name}/expert_{e}"] for e in range(weights.shape[1])]
    np.testing.assert_allclose(means, weights.numpy().mean(0), rtol=1e-5, err_msg=name)
    assert sum(means) == pytest.approx(1.0, abs=1e-5)
  assert len(gates) == len([k for k in results if k.endswith("/expert_0")])
  assert task_set.is_detail_metric("gates/t0/expert_0")
  model.set_compute_dtype(tf.bfloat16)  # The gates read the features cast as the trunk does.
  low = Evaluator(model, task_set.make_tasks(model, names))(
      task_set.eval_dataset(data, names, "dev", batch_size=300))
  for key in (k for k in results if k.startswith("gates/")):
    assert low[key] == pytest.approx(results[key], abs=2e-2), key


def test_cross_stitch_units_and_mtan_masks_are_reported_as_gates():
  """Cross-stitch: each unit's row of each task, its alpha itself (learned, the same for every
  example), as gates/stitch_L_TASK/from_TASK; MTAN: each task's mask at each layer averaged
  over units and the split's examples, as gates/TASK_mask/layer_L."""
  from mtlcore.synthetic.task_set import SyntheticTaskSet  # pylint: disable=g-import-not-at-top
  results = {}
  for architecture in ("cross_stitch", "mtan"):
    task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                                 "architecture": architecture, "layers": 2})
    names = list(task_set.task_names)
    model = task_set.build_model(names, seed=0, assets_dir=None)
    data = task_set.load_data(None)
    results[architecture] = Evaluator(model, task_set.make_tasks(model, names))(
        task_set.eval_dataset(data, names, "dev", batch_size=300))
    if architecture == "cross_stitch":
      model.trunk.units[1]["t2"].alpha.assign([0.2, 0.3, 0.5])
      stitched = Evaluator(model, task_set.make_tasks(model, names))(
          task_set.eval_dataset(data, names, "dev", batch_size=300))
      assert [stitched[f"gates/stitch_2_t2/from_{t}"] for t in names] == pytest.approx(
          [0.2, 0.3, 0.5], abs=1e-5)
    else:
      masks = model.trunk.masks({"x": data["dev"][0]["x"]})
  stitch = results["cross_stitch"]
  assert len([k for k in stitch if k.startswith("gates/")]) == 2 * 3 * 3
  assert stitch["gates/stitch_1_t0/from_t0"] == pytest.approx(0.9, abs=1e-5)  # Near identity.
  assert stitch["gates/stitch_1_t0/from_t1"] == pytest.approx(0.05, abs=1e-5)
  mtan = results["mtan"]
  assert len([k for k in mtan if k.startswith("gates/")]) == 3 * 2
  for t in ("t0", "t1", "t2"):
    for layer in (0, 1):
      assert mtan[f"gates/{t}_mask/layer_{layer + 1}"] == pytest.approx(
          float(np.mean(masks[t][layer])), rel=1e-5)


def test_the_evaluation_state_is_one_vector_whatever_the_split(small):
  task_set, data, model = small
  evaluator = Evaluator(model, task_set.make_tasks(model, task_set.task_names))
  features, labels = data["dev"]
  tenfold = tf.data.Dataset.from_tensor_slices((features, labels)).repeat(10).batch(50)
  sums = evaluator.statistics(tenfold)
  assert sums.shape == (evaluator.size,)
  once = evaluator.statistics(task_set.eval_dataset(data, task_set.task_names, "dev",
                                                    batch_size=50))
  np.testing.assert_allclose(sums, 10 * once, rtol=1e-9)
  assert evaluator.results(sums) == pytest.approx(evaluator.results(once))


def test_the_default_evaluate_scores_with_the_tasks_own_metrics(small):
  task_set, data, model = small
  metrics = task_set.evaluate(model, data, ["kind"], "dev")
  features, labels = data["dev"]
  logits = model(features, tasks=["kind"])["kind"].numpy()
  known = labels["kind"] >= 0
  assert metrics["kind/accuracy"] == pytest.approx(
      np.mean(logits[known].argmax(-1) == labels["kind"][known]))
  assert set(metrics) == {"kind/loss", "kind/accuracy", "kind/macro_f1"}


@pytest.mark.parametrize("corpora,message", [
    ({"train": ({"x": np.zeros((3, 4), np.float32)}, {"kind": np.array([0, 1])})},
     r"corpus 'train' mixes example counts \[2, 3\]"),
    ({"train": ({"x": np.zeros((2, 4), np.float32)}, {"colour": np.array([0, 1])})},
     r"unknown task\(s\) \['colour'\]"),
    ({"train": ({"x": np.zeros((2, 4), np.float32)}, {"kind": np.array([0, 5])})},
     r"corpus 'train', task 'kind': label 5 at example 1"),
    ({"dev": ({"x": np.zeros((2, 4), np.float32)}, {})}, r"no 'train' corpus"),
])
def test_bad_arrays_are_named_at_load(corpora, message):
  class Bad(Small):
    splits = ()

    def arrays(self, data_dir):
      return corpora

  with pytest.raises(ConfigError, match=message):
    Bad().load_data(None)


def _slots(optimizer):
  return [v.numpy().copy() for v in optimizer.variables]


@pytest.mark.parametrize("mode", ["alternate", "joint"])
def test_a_batch_without_one_label_changes_no_variable_or_slot(mode):
  task_set = Small()
  model = task_set.build_model(["value"], seed=0, assets_dir=None)
  tasks = task_set.make_tasks(model, ["value"])
  x = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32)
  target = np.where(np.arange(8) < 4, x.sum(1), np.nan).astype(np.float32)
  # Batch 0 is labelled, batch 1 has no label at all.
  dataset = tf.data.Dataset.from_tensor_slices(({"x": x}, {"value": target})).batch(4).repeat()
  if mode == "alternate":
    optimizer = Adam(0.01)
    trainer = AlternatingTrainer(model=model, tasks=tasks, optimizers={"value": optimizer},
                                 datasets={"value": dataset}, seed=0, jit_compile=True,
                                 sampler=TaskSampler(["value"], None, seed=0))
  else:
    optimizer = Adam(0.01)
    trainer = JointTrainer(model=model, tasks=tasks, optimizer=optimizer, dataset=dataset,
                           seed=0, jit_compile=True)
  trainer.train(1)
  weights, slots = [v.numpy().copy() for v in model.variables_to_train()], _slots(optimizer)
  logs = trainer.train(1)
  assert logs.nonfinite_steps == 0 and int(trainer.global_step.numpy()) == 2
  for before, v in zip(weights, model.variables_to_train()):
    np.testing.assert_array_equal(before, v.numpy())
  for before, after in zip(slots, _slots(optimizer)):
    np.testing.assert_array_equal(before, after)
  trainer.close()


def test_in_step_metrics_are_the_evaluation_metrics_on_the_same_batch(small):
  """One definition: the training logs' kind/macro_f1 over a batch equals the engine's
  evaluation of that batch (same weights), as a fraction in both."""
  task_set, data, model = small
  features, labels = data["dev"]
  tasks = task_set.make_tasks(model, task_set.task_names)
  stream, _ = batching.in_memory((features, labels), batch_size=100, seed=0)
  trainer = JointTrainer(model=model, tasks=tasks, optimizer=Adam(0.01), dataset=stream,
                         seed=0, jit_compile=False)
  before = Evaluator(model, tasks)(tf.data.Dataset.from_tensor_slices(
      (features, labels)).batch(100))
  logs = trainer.train(1)  # Its logs come from the forward pass before its update.
  trainer.close()
  for task in ("kind", "flags", "value"):
    for name, value in logs.tasks[task].metrics.items():
      if name in ("weight", "cosine"):
        continue
      assert value == pytest.approx(before[f"{task}/{name}"], rel=1e-5, abs=1e-6), (task, name)
  assert 0 <= logs.tasks["kind"].metrics["accuracy"] <= 1


@pytest.mark.parametrize("architecture", ["ple", "mtan", "mmoe", "dselect_k"])
def test_the_gates_come_from_the_pass_that_makes_the_predictions(architecture):
  """predictions_and_gates (the evaluation's pass) runs the trunk's layers once: its graph has
  as many matrix products as the plain forward pass (PLE's levels, MTAN's masks and the
  mixtures' gates are not computed again), and its gates are those gate_weights computes on
  its own."""
  from mtlcore.synthetic.task_set import SyntheticTaskSet  # pylint: disable=g-import-not-at-top
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": architecture, "layers": 2, "levels": 2,
                               "experts": 4})
  names = list(task_set.task_names)
  model = task_set.build_model(names, seed=0, assets_dir=None)
  spec = {"x": tf.TensorSpec([None, 6], tf.float32)}

  def products(function):
    graph = tf.function(function).get_concrete_function(spec).graph
    return sum(op.type in ("MatMul", "BatchMatMulV2", "Einsum") for op in graph.get_operations())

  assert products(lambda f: model.predictions_and_gates(f)) == products(lambda f: model(f))
  x = np.random.default_rng(0).normal(size=(5, 6)).astype(np.float32)
  _, gates = model.predictions_and_gates({"x": x})
  alone = model.gate_weights({"x": x})
  assert sorted(gates) == sorted(alone) and gates
  for name, weights in gates.items():
    np.testing.assert_allclose(weights, alone[name], rtol=1e-6, atol=1e-7)
