"""The synthetic task set (mtlcore.synthetic): the MMoE paper's generator at K tasks, and runs
of it through mtl-train with any number of tasks."""

import json

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.synthetic import data
from mtlcore.synthetic.task_set import SyntheticTaskSet
from tests.binaries import TRAIN, error_line, run_in_process


@pytest.mark.parametrize("correlation", [-0.5, 0.0, 0.5, 0.9, 1.0])
def test_the_weight_vectors_have_the_set_cosines(correlation):
  w = data.weight_vectors(5, correlation, 20, scale=2.0, seed=1)
  norms = np.linalg.norm(w, axis=1)
  np.testing.assert_allclose(norms, 2.0, rtol=1e-12)
  cosines = (w @ w.T) / np.outer(norms, norms)
  np.testing.assert_allclose(cosines[0, 1:], correlation, atol=1e-12)  # With t0: p.
  others = cosines[1:, 1:][~np.eye(4, dtype=bool)]
  np.testing.assert_allclose(others, correlation**2, atol=1e-12)  # Among the others: p^2.


def test_the_labels_follow_the_formula_and_the_seed():
  w = data.weight_vectors(2, 0.5, 6, seed=3)
  alpha, beta = data.sinusoids(4, seed=3)
  x, y = data.make_split(50, w, alpha, beta, seed=3, split=0)
  projected = x.astype(np.float64) @ w.T
  clean = projected + np.sin(projected[..., None] * alpha + beta).sum(-1)
  residual = y - clean
  assert abs(residual.std() - np.sqrt(data.NOISE_VARIANCE)) < 0.03  # The noise, N(0, 0.01).
  again = data.make_split(50, w, alpha, beta, seed=3, split=0)
  np.testing.assert_array_equal(y, again[1])
  other = data.make_split(50, w, alpha, beta, seed=3, split=1)
  assert not np.array_equal(x, other[0])


def test_the_label_correlation_rises_with_p_as_the_paper_says():
  alpha, beta = data.sinusoids(10, seed=0)
  measured = []
  for p in (0.0, 0.5, 0.9, 1.0):
    w = data.weight_vectors(2, p, 100, seed=0)
    _, y = data.make_split(20000, w, alpha, beta, seed=0, split=0)
    measured.append(np.corrcoef(y[:, 0], y[:, 1])[0, 1])
  assert measured == sorted(measured), measured
  assert abs(measured[0]) < 0.05 and measured[-1] > 0.99, measured


def test_bad_options_are_one_line_errors():
  with pytest.raises(ConfigError, match="num_tasks must be between 1 and input_dim=4"):
    SyntheticTaskSet({"num_tasks": 5, "input_dim": 4})
  with pytest.raises(ConfigError, match="correlation must be in \\[-1, 1\\], got 1.5"):
    SyntheticTaskSet({"correlation": 1.5})
  with pytest.raises(ConfigError, match="sinusoids must be >= 0"):
    SyntheticTaskSet({"sinusoids": -1})


@pytest.mark.parametrize("weighting", ["mgda", "famo"])
def test_mtl_train_trains_eight_synthetic_tasks_and_scores_each(weighting, tmp_path):
  result = run_in_process(TRAIN, "--task_set=synthetic", "--num_tasks=8", "--num_examples=512",
                          "--input_dim=16", "--train_steps=80", "--steps_per_loop=40",
                          "--batch_size=32", "--learning_rate=0.01", f"--weighting={weighting}",
                          "--noxla", f"--model_dir={tmp_path}")
  assert result.returncode == 0, result.stderr
  metrics = json.loads((tmp_path / "metrics.json").read_text())
  for split in ("dev", "test"):
    assert {f"t{k}/rmse" for k in range(8)} <= metrics[split].keys()
  # Predicting 0 scores the labels' own spread; 80 steps must beat it on every task.
  task_set = SyntheticTaskSet({"num_tasks": 8, "num_examples": 512, "input_dim": 16})
  _, labels = task_set.arrays(None)["dev"]
  for k in range(8):
    spread = float(np.sqrt(np.mean(np.square(labels[f"t{k}"]))))
    assert metrics["dev"][f"t{k}/rmse"] < spread, (k, metrics["dev"][f"t{k}/rmse"], spread)


def test_a_bad_synthetic_flag_is_one_line_before_training(tmp_path):
  result = run_in_process(TRAIN, "--task_set=synthetic", "--num_tasks=200",
                          f"--model_dir={tmp_path / 'm'}")
  assert result.returncode != 0
  assert "num_tasks must be between 1 and input_dim=100" in error_line(result)
  assert not (tmp_path / "m").exists()


def _mmoe(tasks=("t0", "t1", "t2")):
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": "mmoe", "experts": 4, "expert_size": 5})
  return task_set, task_set.build_model(list(tasks), seed=0, assets_dir=None)


def test_mmoe_gates_start_uniform_and_each_task_owns_its_gate():
  task_set, model = _mmoe()
  x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  gates = model.trunk.gate_weights({"x": x})
  for g in gates.values():
    np.testing.assert_allclose(g, 0.25, rtol=1e-6)
  outputs = model.trunk({"x": x}, training=False, seed=None)
  experts = np.stack([np.maximum(x @ e.w.numpy() + e.b.numpy(), 0) for e in model.trunk.experts],
                     axis=1)
  np.testing.assert_allclose(outputs["t1"], experts.mean(1), rtol=1e-5, atol=1e-6)
  owners = model.owners
  for t in ("t0", "t1", "t2"):
    assert all(owners.owner(v) == t for v in model.trunk.gates[t].trainable_variables)
  assert all(owners.owner(v) is SHARED for e in model.trunk.experts
             for v in e.trainable_variables)
  _, two = _mmoe(("t0", "t2"))
  assert sorted(two.trunk.gates) == ["t0", "t2"]  # A gate only for a trained task.


def test_the_one_gate_moe_gives_every_task_one_shared_mixture():
  """The MMoE paper's one-gate baseline: a single gate, shared like the experts, so every
  task reads the same representation and no task owns a part of the trunk."""
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": "moe", "experts": 4, "expert_size": 5})
  model = task_set.build_model(list(task_set.task_names), seed=0, assets_dir=None)
  gate = model.trunk.gates["shared"]
  gate.w.assign(tf.random.stateless_normal(gate.w.shape, seed=[0, 1]))
  x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  outputs = model.trunk({"x": x}, training=False, seed=None)
  logits = x @ gate.w.numpy() + gate.b.numpy()
  weights = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
  experts = np.stack([np.maximum(x @ e.w.numpy() + e.b.numpy(), 0) for e in model.trunk.experts],
                     axis=1)
  for t in ("t0", "t1", "t2"):
    np.testing.assert_allclose(outputs[t], np.einsum("be,beh->bh", weights, experts),
                               rtol=1e-5, atol=1e-6)
  assert model.trunk.task_parts() == {}
  assert all(model.owners.owner(v) is SHARED for v in model.trunk.trainable_variables)


@pytest.mark.parametrize("architecture", ["mmoe", "ple", "cross_stitch", "mtan", "dselect_k"])
def test_an_alternating_step_of_one_task_leaves_the_others_parts_heads_and_slots(architecture):
  """MMoE (a gate per task), PLE (each task's experts and gates at every level),
  cross-stitch (each task's row of the last unit), MTAN (each task's attention masks) and
  DSelect-k (each task's selectors):
  three steps of t0 leave every variable t1 and t2 own bitwise and their optimizers unused;
  t0's own parts and the shared ones move."""
  from mtlcore.optimizers import Adam  # pylint: disable=g-import-not-at-top
  from mtlcore.sampling import TaskSampler  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import AlternatingTrainer  # pylint: disable=g-import-not-at-top
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": architecture, "experts": 4, "expert_size": 5})
  names = list(task_set.task_names)
  model = task_set.build_model(names, seed=0, assets_dir=None)
  data = task_set.load_data(None)
  tasks = task_set.make_tasks(model, names)
  optimizers = {t: Adam(0.01) for t in names}
  trainer = AlternatingTrainer(
      model=model, tasks=tasks, optimizers=optimizers,
      datasets={t: task_set.task_dataset(data, t, batch_size=16, seed=i).make_dataset
                for i, t in enumerate(names)},
      sampler=TaskSampler(names, [1.0, 0.0, 0.0], seed=0), jit_compile=False)
  owner = model.owners.owner
  kept = [v for v in model.trainable_variables if owner(v) in ("t1", "t2")]
  moved = [v for v in model.trunk.trainable_variables if owner(v) in ("t0", SHARED)]
  assert kept and moved
  before, moved_before = [v.numpy().copy() for v in kept], [v.numpy().copy() for v in moved]
  trainer.train(3)
  for b, v in zip(before, kept):
    np.testing.assert_array_equal(b, v.numpy(), err_msg=v.name)
  for t in ("t1", "t2"):
    assert int(optimizers[t].iterations.numpy()) == 0
  for b, v in zip(moved_before, moved):
    assert not np.array_equal(b, v.numpy()), v.name


@pytest.mark.parametrize("architecture", ["mmoe", "mtan", "dselect_k"])
def test_an_alternating_step_compiles_only_what_its_task_reads(architecture):
  """The model runs the whole trunk, and XLA drops what the step's loss does not reach: the
  compiled step of t0 holds as many matrix products at 6 tasks as at 2 (the other tasks'
  gates, DSelect-k selectors and attention masks are not computed). PLE's lower levels and
  cross-stitch's columns feed t0's representation, so their steps grow with the tasks by
  design (measured: PLE 26 -> 32 products from 2 to 8 tasks, cross-stitch 18 -> 60)."""
  from mtlcore.trainers import build  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  products = []
  for k in (2, 6):
    options = {"num_tasks": k, "architecture": architecture, "input_dim": 6,
               "num_examples": 32, "experts": 2, "expert_size": 4}
    trainer = build.in_process(RunConfig(task_set="synthetic", mode="alternate", batch_size=8,
                                         train_steps=1, options=options), total_steps=1).trainer
    task_set = SyntheticTaskSet(options)
    features, labels = next(iter(task_set.task_dataset(
        task_set.load_data(None), "t0", batch_size=8, seed=0).make_dataset(0)))
    compiled = trainer.step_functions()["t0"].experimental_get_compiler_ir(features, labels)
    products.append(compiled(stage="optimized_hlo").count(" dot("))
  assert products[0] == products[1] > 0, products
