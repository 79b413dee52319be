"""PLE and CGC (mtlcore.progressive_layered_extraction): the paper's levels computed as
written, each task owning its experts and gates, and which task's loss reaches which experts."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.synthetic.task_set import SyntheticTaskSet

TASKS = ("t0", "t1", "t2")


def _model(architecture="ple", **options):
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": architecture, "expert_size": 5,
                               "shared_experts": 2, "task_experts": 2, **options})
  return task_set.build_model(list(TASKS), seed=0, assets_dir=None)


def _randomise_gates(trunk):
  """Non-uniform gates, so that the reference below checks which gate weighs which expert."""
  for j, level in enumerate(trunk.levels):
    gates = list(level.task_gates.values()) + (
        [level.shared_gate] if level.shared_gate is not None else [])
    for i, gate in enumerate(gates):
      gate.w.assign(tf.random.stateless_normal(gate.w.shape, seed=[j, i]))


def _reference(trunk, x):
  """The paper's equations in numpy, from the layers' weights."""
  relu = lambda v: np.maximum(v, 0.0)
  dense = lambda layer, v: v @ layer.w.numpy() + layer.b.numpy()
  softmax = lambda v: np.exp(v - v.max(1, keepdims=True)) / np.exp(
      v - v.max(1, keepdims=True)).sum(1, keepdims=True)
  inputs, shared = {t: x for t in TASKS}, x
  for level in trunk.levels:
    shared_out = [relu(dense(e, shared)) for e in level.shared_experts]
    own = {t: [relu(dense(e, inputs[t])) for e in level.task_experts[t]] for t in TASKS}
    outputs = {}
    for t in TASKS:
      gate = softmax(dense(level.task_gates[t], inputs[t]))
      outputs[t] = sum(gate[:, [i]] * e for i, e in enumerate(own[t] + shared_out))
    if level.shared_gate is not None:
      gate = softmax(dense(level.shared_gate, shared))
      pool = [e for t in TASKS for e in own[t]] + shared_out
      shared = sum(gate[:, [i]] * e for i, e in enumerate(pool))
    inputs = outputs
  return inputs


@pytest.mark.parametrize("architecture, levels", [("cgc", 1), ("ple", 3)])
def test_the_levels_compute_the_papers_equations_and_gates_start_uniform(architecture, levels):
  model = _model(architecture, levels=levels)
  trunk = model.trunk
  assert len(trunk.levels) == levels and trunk.levels[-1].shared_gate is None
  x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  gates = trunk.gate_weights({"x": x})
  assert {n: g.shape[1] for n, g in gates.items()} == trunk.gate_widths()
  assert len(gates) == 3 * levels + levels - 1  # A gate per task per level, shared ones below.
  for name, g in gates.items():
    np.testing.assert_allclose(g, 1.0 / g.shape[1], rtol=1e-6, err_msg=name)
  _randomise_gates(trunk)
  got = trunk({"x": x}, training=False, seed=None)
  want = _reference(trunk, x.astype(np.float64))
  for t in TASKS:
    np.testing.assert_allclose(got[t], want[t], rtol=1e-4, atol=1e-5)


def test_each_task_owns_its_experts_and_gates_at_every_level_and_the_rest_is_shared():
  model = _model(levels=2)
  owner = model.owners.owner
  for level in model.trunk.levels:
    for t in TASKS:
      for part in level.task_experts[t] + [level.task_gates[t]]:
        assert all(owner(v) == t for v in part.trainable_variables), part.name
    shared = level.shared_experts + ([level.shared_gate] if level.shared_gate else [])
    assert all(owner(v) is SHARED for part in shared for v in part.trainable_variables)


@pytest.mark.parametrize("cross", [False, True])
def test_another_tasks_loss_reaches_a_tasks_experts_only_with_cross_task_gradients(cross):
  """t0's loss and t1's level-0 experts: by default no gradient (t1's experts learn from t1's
  loss alone); with the paper's cross-task gradients, through the shared gate, some."""
  model = _model(levels=2, cross_task_gradients=cross)
  _randomise_gates(model.trunk)
  x = tf.constant(np.random.default_rng(1).normal(size=(8, 6)), tf.float32)
  t1_experts = [v for e in model.trunk.levels[0].task_experts["t1"] for v in e.trainable_variables]
  t0_parts = [v for e in model.trunk.levels[0].task_experts["t0"] for v in e.trainable_variables]
  with tf.GradientTape(persistent=True) as tape:
    outputs = model.trunk({"x": x}, training=True, seed=None)
    loss = tf.reduce_sum(tf.square(outputs["t0"]))
  reaching = [g is not None and bool(tf.reduce_any(g != 0))
              for g in tape.gradient(loss, t1_experts)]
  assert any(reaching) == cross, reaching
  assert all(g is not None for g in tape.gradient(loss, t0_parts))


def test_bad_sizes_are_one_line_errors():
  with pytest.raises(ConfigError, match="levels"):
    _model(levels=0)
  with pytest.raises(ConfigError, match="shared_experts"):
    _model(shared_experts=0)
