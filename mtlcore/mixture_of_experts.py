"""MixtureOfExperts: MMoE (Ma et al. 2018), shared experts and a softmax gate per task.

  features[feature] [B, input_size]
    -> experts: E ReLU layers, each [B, expert_size], shared by every task;
    -> per task k: gate_k = softmax(x G_k + b_k) [B, E] (its own parameters);
    -> {task: sum_e gate_k[:, e] expert_e(x)} [B, expert_size].

Every axis but the last is a batch axis: [B, T, input_size] (a vector per token) mixes each
token on its own, with gates [B, T, E].

Each task's gate is a task-owned part of the trunk (`task_parts`, mtlcore.ownership): a step
of another task reads none of it and leaves it and its optimizer slots bitwise unchanged;
the experts are shared. With one expert every gate is 1 and the trunk is hard sharing. The
gates start uniform (zero weights: every expert 1/E), the experts Glorot-uniform.

`one_gate=True` is the MMoE paper's one-gate baseline (OMoE): a single gate, shared like the
experts, gives every task the same mixture.

`GatedExperts` is what MMoE and DSelect-k (mtlcore.dselect_k) share: the experts, the mixing
(`mix`), and a gate per task as the task's own part; they differ in their gates.
"""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import Linear
from mtlcore.model import SharedTrunk


def relu_experts(input_size, num_experts, expert_size, *, seed):
  """E experts, each a Linear [input_size -> expert_size] (ReLU applied by `mix`), seeded
  seed, seed + 1, ...: shared by every task (MMoE's, DSelect-k's)."""
  return [Linear(input_size, expert_size, seed=seed + e, name=f"expert_{e}")
          for e in range(num_experts)]


def mix(gates, experts, x):
  """{name: sum_e gate[..., e] relu(expert_e(x))} [..., expert_size] for gates
  {name: [..., E]}: every expert runs once, whatever the number of gates."""
  outputs = tf.stack([tf.nn.relu(e(x)) for e in experts], axis=-2)  # [..., E, H]
  return {name: tf.einsum("...e,...eh->...h", g, outputs) for name, g in gates.items()}


def uniform_gate(input_size, width, *, seed, name):
  """A softmax gate's logits layer [input_size -> width], zero weights: uniform over its
  experts at the start (MMoE's gates, PLE's)."""
  gate = Linear(input_size, width, seed=seed, name=name)
  gate.w.assign(tf.zeros_like(gate.w))
  return gate


class GatedExperts(SharedTrunk):
  """Shared experts and gates over them (MMoE, DSelect-k): outputs one representation per
  task, named by the task, which the task's head reads. A subclass sets `self.gates` {gate
  name: a module of x [..., input_size]} and, if a gate's output is not yet its weights,
  `_weights`; a gate named by a task is that task's own part of the trunk, any other is
  shared."""

  def __init__(self, input_size, tasks, *, num_experts, expert_size, seed, feature, name):
    super().__init__(name=name)
    require_positive("num_experts", num_experts)
    require_positive("expert_size", expert_size)
    self.feature = feature
    self.tasks = tuple(tasks)
    self.experts = relu_experts(input_size, num_experts, expert_size, seed=seed)
    self.output_sizes = {t: expert_size for t in self.tasks}
    self.gates = {}

  def _weights(self, gate, x):
    """A gate's weights [..., E] on x; this default: the gate's output itself."""
    return gate(x)

  def _gate_of(self, task):
    """The name of the gate that mixes `task`'s representation; this default: the task's."""
    return task

  def gate_widths(self):
    return {name: len(self.experts) for name in self.gates}

  def gate_weights(self, features, representations=None):
    """{gate name: its weights [B, E]} on a batch (from the input features: `representations`
    is not needed)."""
    del representations
    x = features[self.feature]
    return {name: self._weights(gate, x) for name, gate in self.gates.items()}

  def __call__(self, features, *, training, seed):
    return self.call_with_gates(features, training=training, seed=seed)[0]

  def call_with_gates(self, features, *, training, seed):
    del training, seed
    gates = self.gate_weights(features)
    mixed = mix(gates, self.experts, features[self.feature])
    return {t: mixed[self._gate_of(t)] for t in self.tasks}, gates

  def task_parts(self):
    return {name: gate for name, gate in self.gates.items() if name in self.tasks}


class MixtureOfExperts(GatedExperts):
  """MMoE: a softmax gate per task (or one shared gate, `one_gate`)."""

  def __init__(self, input_size, tasks, *, num_experts, expert_size, seed, feature="x",
               one_gate=False, name=None):
    super().__init__(input_size, tasks, num_experts=num_experts, expert_size=expert_size,
                     seed=seed, feature=feature, name=name)
    self.one_gate = bool(one_gate)
    if self.one_gate:
      self.gates = {"shared": uniform_gate(input_size, num_experts, seed=seed, name="gate")}
    else:
      self.gates = {t: uniform_gate(input_size, num_experts, seed=seed, name=f"gate_{t}")
                    for t in self.tasks}

  def _weights(self, gate, x):
    return tf.nn.softmax(gate(x))

  def _gate_of(self, task):
    return "shared" if self.one_gate else task
