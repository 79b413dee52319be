"""DSelectK (mtlcore.dselect_k): the DSelect-k gate against the paper's formulas in numpy, its
sparsity once the smooth steps saturate, its start, ownership and one-line errors."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.dselect_k import DSelectK, binary_codes, smooth_step
from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.synthetic.task_set import SyntheticTaskSet
from tests.binaries import TRAIN, error_line, run_in_process


def numpy_smooth_step(t, gamma):
  return np.where(t <= -gamma / 2, 0.0, np.where(t >= gamma / 2, 1.0,
                                                  -2 * t ** 3 / gamma ** 3 + 1.5 * t / gamma + 0.5))


def numpy_gate(x, gate, num_experts):
  """The paper's gate, expert by expert: selector i's weight of expert e is the product over
  the binary digits j of e of S(z_ij) where the digit is 1 and 1 - S(z_ij) where it is 0."""
  k, m = gate.selections, gate.digits
  z = (x @ gate.selector_logits.w.numpy() + gate.selector_logits.b.numpy()).reshape(-1, k, m)
  s = numpy_smooth_step(z, gate.gamma)
  logits = x @ gate.selector_weights.w.numpy() + gate.selector_weights.b.numpy()
  alpha = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
  out = np.zeros((len(x), num_experts))
  for e in range(num_experts):
    digits = [int(d) for d in np.binary_repr(e, width=m)]
    r = np.prod([s[:, :, j] if d else 1 - s[:, :, j] for j, d in enumerate(digits)], axis=0)
    out[:, e] = (alpha * r).sum(-1)
  return out


def _trunk(num_experts=8, selections=2, tasks=("a", "b")):
  return DSelectK(5, tasks, num_experts=num_experts, expert_size=3, selections=selections,
                  seed=0)


def test_the_smooth_step_and_the_codes():
  t = np.linspace(-1.0, 1.0, 41).astype(np.float32)
  for gamma in (0.5, 1.0, 2.0):
    np.testing.assert_allclose(smooth_step(tf.constant(t), gamma), numpy_smooth_step(t, gamma),
                               atol=1e-6)
  assert binary_codes(8).numpy().astype(int).tolist()[5] == [1, 0, 1]


def test_the_gate_is_the_papers_and_the_outputs_mix_the_experts_by_it():
  trunk = _trunk()
  for gate in trunk.gates.values():  # Away from the start, so the selectors differ.
    for layer in (gate.selector_logits, gate.selector_weights):
      layer.w.assign(tf.random.stateless_normal(layer.w.shape, [1, 2]))
  x = np.random.default_rng(0).normal(size=(9, 5)).astype(np.float32)
  gates = trunk.gate_weights({"x": x})
  outputs = trunk({"x": x}, training=True, seed=None)
  experts = np.stack([np.maximum(x @ e.w.numpy() + e.b.numpy(), 0) for e in trunk.experts], 1)
  for t in ("a", "b"):
    expected = numpy_gate(x, trunk.gates[t], 8)
    np.testing.assert_allclose(gates[t], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sum(gates[t], -1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(outputs[t], np.einsum("be,beh->bh", expected, experts),
                               rtol=1e-4, atol=1e-5)


def test_saturated_selectors_weigh_at_most_k_experts_and_pass_no_gradient_to_their_codes():
  trunk = _trunk(num_experts=8, selections=2)
  gate = trunk.gates["a"]
  # z = +-3 whatever the input: selector 0 picks expert 0b101 = 5, selector 1 expert 0b010 = 2.
  gate.selector_logits.w.assign(tf.zeros_like(gate.selector_logits.w))
  gate.selector_logits.b.assign([3.0, -3.0, 3.0, -3.0, 3.0, -3.0])
  x = tf.constant(np.random.default_rng(1).normal(size=(6, 4, 5)), tf.float32)  # [B, T, 5]
  with tf.GradientTape() as tape:
    weights = gate(x)
    loss = tf.reduce_sum(weights * tf.range(8, dtype=tf.float32))
  assert weights.shape == (6, 4, 8)
  nonzero = np.flatnonzero(np.asarray(weights).reshape(-1, 8).sum(0))
  assert nonzero.tolist() == [2, 5]
  np.testing.assert_allclose(np.sum(weights, -1), 1.0, rtol=1e-6)
  grads = tape.gradient(loss, [gate.selector_logits.b, gate.selector_weights.b])
  assert not np.any(grads[0])  # Outside (-gamma/2, gamma/2) the step is flat.
  assert np.any(grads[1])  # The two selectors' weights still learn.


def test_the_gates_start_spread_and_each_task_owns_its_selectors():
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": "dselect_k", "experts": 4, "expert_size": 5})
  model = task_set.build_model(list(task_set.task_names), seed=0, assets_dir=None)
  x = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  for g in model.trunk.gate_weights({"x": x}).values():
    # z within gamma/100 of 0 (times the inputs): every expert near 1/4.
    np.testing.assert_allclose(g, 0.25, atol=0.05)
  for t in ("t0", "t1", "t2"):
    assert all(model.owners.owner(v) == t for v in model.trunk.gates[t].trainable_variables)
  assert all(model.owners.owner(v) is SHARED for e in model.trunk.experts
             for v in e.trainable_variables)


def test_bad_sizes_are_one_line_errors(tmp_path):
  for experts, selections, match in ((6, 2, "experts must be a power of two"),
                                     (1, 1, "experts must be a power of two"),
                                     (4, 5, "selected_experts must be at most experts=4"),
                                     (4, 0, "selected_experts must be a positive integer")):
    with pytest.raises(ConfigError, match=match):
      _trunk(num_experts=experts, selections=selections)
  result = run_in_process(TRAIN, "--task_set=synthetic", "--architecture=dselect_k",
                          "--experts=6", f"--model_dir={tmp_path / 'run'}")
  assert error_line(result).endswith(
      "--experts must be a power of two, at least 2, for dselect_k (its selectors' binary "
      "codes reach 2^m experts), got 6."), result.stderr
  assert not (tmp_path / "run").exists()


def test_the_evaluation_reports_how_many_experts_each_gate_uses():
  """gates/TASK/nonzero: the mean number of experts with a non-zero weight per example. A
  saturated gate (t0: its selectors pick experts 1 and 2 whatever the input) uses 2; a gate at
  its start (t1) spreads over all 4. The mean weights stay reported beside it."""
  from mtlcore.evaluation import Evaluator  # pylint: disable=g-import-not-at-top
  task_set = SyntheticTaskSet({"num_tasks": 2, "input_dim": 6, "num_examples": 64,
                               "architecture": "dselect_k", "experts": 4, "expert_size": 5})
  names = list(task_set.task_names)
  model = task_set.build_model(names, seed=0, assets_dir=None)
  logits = model.trunk.gates["t0"].selector_logits  # 2 selectors x 2 binary digits.
  logits.w.assign(tf.zeros_like(logits.w))
  logits.b.assign([-3.0, 3.0, 3.0, -3.0])  # Codes 01 and 10: experts 1 and 2.
  data = task_set.load_data(None)
  results = Evaluator(model, task_set.make_tasks(model, names))(
      task_set.eval_dataset(data, names, "dev", batch_size=7))
  assert results["gates/t0/nonzero"] == pytest.approx(2.0)
  assert results["gates/t1/nonzero"] == pytest.approx(4.0)
  assert results["gates/t0/expert_0"] == 0.0 and results["gates/t0/expert_3"] == 0.0
  assert sum(results[f"gates/t0/expert_{e}"] for e in range(4)) == pytest.approx(1.0)
