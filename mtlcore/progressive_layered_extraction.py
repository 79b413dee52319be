"""ProgressiveLayeredExtraction: PLE and its one-level case CGC (Tang et al. 2020), shared
and task-specific experts in stacked extraction levels.

  features[feature] [B, input_size] -> level 1 -> ... -> level L -> {task: [B, expert_size]}

Level j holds, for each task k, `task_experts` ReLU experts E_kj and a gate G_kj, and
`shared_experts` shared ReLU experts E_sj. Each task k has its own input h_k (at level 1 the
features) and the shared experts a shared input h_s (level 1: the features):

  task k's output    softmax(h_k G_kj) [B, m_t + m_s] . [E_kj(h_k), E_sj(h_s)]
  shared output      softmax(h_s G_sj) [B, K m_t + m_s] . [E_1j(h_1) .. E_Kj(h_K), E_sj(h_s)]
                     (every level but the last: the next level's shared input)

CGC is one level (`levels=1`: no shared gate). Task k's experts and gates (every level) are a
task-owned part of the trunk (`task_parts`, mtlcore.ownership); the shared experts and the
shared gates are shared.

Gradients across tasks. In the paper the shared gate mixes every task's experts into the
shared path, so task A's loss reaches task B's experts below the last level. By default
(`cross_task_gradients=False`) the shared gate reads the task experts' outputs through
tf.stop_gradient: B's experts learn from B's loss through B's own gate only, and no other
task's step moves them, joint or alternating. With `cross_task_gradients=True` the shared
path carries the paper's gradient: in joint mode every task's loss then moves every task's
lower experts; in alternating mode task A's step still leaves B's parts as they are (they are
not A's to train) while its loss reads them.

Gates start uniform (zero weights: each expert 1 / its gate's width), the experts
Glorot-uniform, as MixtureOfExperts'. Every axis but the last is a batch axis (e.g. one
vector per token, [B, T, input_size]).
"""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import Linear
from mtlcore.mixture_of_experts import uniform_gate
from mtlcore.model import SharedTrunk


class ExtractionLevel(tf.Module):
  """One level: each task's experts and gate, the shared experts, and (below the last level)
  the shared gate. `__call__` maps ({task: [B, input_size]}, shared [B, input_size]) to
  ({task: [B, expert_size]}, shared [B, expert_size] or None at the last level)."""

  def __init__(self, input_size, tasks, *, shared_experts, task_experts, expert_size, seed,
               last, cross_task_gradients, name=None):
    super().__init__(name=name)
    self.tasks = tuple(tasks)
    self.cross_task_gradients = bool(cross_task_gradients)
    expert = lambda i, n: Linear(input_size, expert_size, seed=seed + i, name=n)
    self.shared_experts = [expert(e, f"shared_expert_{e}") for e in range(shared_experts)]
    self.task_experts = {
        t: [expert(shared_experts + k * task_experts + e, f"{t}_expert_{e}")
            for e in range(task_experts)]
        for k, t in enumerate(self.tasks)}
    self.task_gates = {t: uniform_gate(input_size, task_experts + shared_experts, seed=seed,
                                        name=f"{t}_gate") for t in self.tasks}
    self.shared_gate = None if last else uniform_gate(
        input_size, len(self.tasks) * task_experts + shared_experts, seed=seed,
        name="shared_gate")

  def gate_weights(self, inputs, shared):
    """{task: softmax gate [B, m_t + m_s]} (its own experts first), and "shared": the shared
    gate [B, K m_t + m_s] below the last level."""
    weights = {t: tf.nn.softmax(self.task_gates[t](inputs[t])) for t in self.tasks}
    if self.shared_gate is not None:
      weights["shared"] = tf.nn.softmax(self.shared_gate(shared))
    return weights

  def __call__(self, inputs, shared):
    return self.call_with_gates(inputs, shared)[:2]

  def call_with_gates(self, inputs, shared):
    """`__call__`'s pair and the level's `gate_weights` that mixed them."""
    run = lambda experts, x: tf.stack([tf.nn.relu(e(x)) for e in experts], axis=-2)
    shared_out = run(self.shared_experts, shared)  # [B, m_s, H]
    own = {t: run(self.task_experts[t], inputs[t]) for t in self.tasks}  # [B, m_t, H]
    gates = self.gate_weights(inputs, shared)
    outputs = {t: tf.einsum("...e,...eh->...h", gates[t], tf.concat([own[t], shared_out], -2))
               for t in self.tasks}
    if self.shared_gate is None:
      return outputs, None, gates
    read = (lambda x: x) if self.cross_task_gradients else tf.stop_gradient
    pool = tf.concat([read(own[t]) for t in self.tasks] + [shared_out], -2)
    return outputs, tf.einsum("...e,...eh->...h", gates["shared"], pool), gates


class ProgressiveLayeredExtraction(SharedTrunk):
  """Outputs one representation per task, named by the task; the task's head reads it."""

  def __init__(self, input_size, tasks, *, levels, shared_experts, task_experts, expert_size,
               seed, feature="x", cross_task_gradients=False, name=None):
    super().__init__(name=name)
    for what, value in (("levels", levels), ("shared_experts", shared_experts),
                        ("task_experts", task_experts), ("expert_size", expert_size)):
      require_positive(what, value)
    self.feature = feature
    self.tasks = tuple(tasks)
    self.levels = [
        ExtractionLevel(input_size if j == 0 else expert_size, self.tasks,
                        shared_experts=shared_experts, task_experts=task_experts,
                        expert_size=expert_size, seed=seed + 1000 * j, last=j == levels - 1,
                        cross_task_gradients=cross_task_gradients, name=f"level_{j}")
        for j in range(levels)]
    self.output_sizes = {t: expert_size for t in self.tasks}

  def __call__(self, features, *, training, seed):
    return self.call_with_gates(features, training=training, seed=seed)[0]

  def call_with_gates(self, features, *, training, seed):
    """The representations and every level's gates (as `gate_weights`) from one pass."""
    del training, seed
    x = features[self.feature]
    inputs, shared, weights = {t: x for t in self.tasks}, x, {}
    for j, level in enumerate(self.levels):
      inputs, shared, gates = level.call_with_gates(inputs, shared)
      weights.update({f"level_{j}/{name}": w for name, w in gates.items()})
    return inputs, weights

  def gate_widths(self):
    """{"level_J/TASK": m_t + m_s, "level_J/shared": K m_t + m_s (not at the last level)}."""
    widths = {}
    for j, level in enumerate(self.levels):
      widths.update({f"level_{j}/{t}": g.w.shape[1] for t, g in level.task_gates.items()})
      if level.shared_gate is not None:
        widths[f"level_{j}/shared"] = level.shared_gate.w.shape[1]
    return widths

  def gate_weights(self, features, representations=None):
    """{"level_J/TASK": the task's gate [B, m_t + m_s] (its own experts first),
    "level_J/shared": the shared gate [B, K m_t + m_s] (tasks' experts in task order, then
    the shared ones; not at the last level)} on a batch. A level's gates read the level
    below's outputs, which the representations do not hold: the levels run again
    (`call_with_gates` gives both from one pass)."""
    del representations
    return self.call_with_gates(features, training=False, seed=None)[1]

  def task_parts(self):
    return {t: [part for level in self.levels
                for part in level.task_experts[t] + [level.task_gates[t]]]
            for t in self.tasks}
