"""CrossStitchNetwork: cross-stitch units (Misra et al. 2016) between one column per task.

  features[feature] [B, input_size]
    -> layer l = 1..L: each task k's column z_k = relu(h_k W_kl + b_kl) [B, hidden_size]
                       (h_k: the features at l = 1, else task k's input from layer l - 1);
       then the cross-stitch unit: h_k = sum_j alpha_l[k, j] z_j [B, hidden_size];
    -> {task k: h_k after layer L} [B, hidden_size].

The paper's unit is a learned K x K mixing matrix per layer (one scalar per pair of tasks; it
stitches two columns, this one K). Ownership follows which losses reach a variable
(mtlcore.ownership): row k of the last unit makes task k's representation, so task k's loss
alone reaches it, and it is task k's part of the trunk (`task_parts`): a step of another task
leaves it and its optimizer slots bitwise unchanged. Everything below it is shared: through
the units every task's loss reaches every column and every row of the earlier units (the
paper's point: the columns learn from each other's tasks as much as alpha lets them), so an
alternating step of task k trains all columns, the earlier units, its own last row and its
head, and a joint gradient method combines the tasks' gradients on all of them.

Every axis but the last is a batch axis (e.g. one vector per token, [B, T, input_size]).
Initialised as the paper does, near identity: alpha[k, k] = `self_weight` (the paper's
alpha_S, 0.9), alpha[k, j] = (1 - self_weight) / (K - 1) (alpha_D, 0.1 for two tasks); the
columns Glorot-uniform. The paper also trains alpha with a larger learning rate;
here every variable takes its task's optimizer's rate.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive
from mtlcore.layers import Linear
from mtlcore.model import SharedTrunk


class CrossStitchRow(tf.Module):
  """Task k's row of one cross-stitch unit: `alpha` [K] weighs the K columns' outputs
  (in the trunk's task order) into task k's input of the next layer."""

  def __init__(self, num_tasks, own_index, *, self_weight, name=None):
    super().__init__(name=name)
    if num_tasks == 1:
      initial = [1.0]
    else:
      other = (1.0 - self_weight) / (num_tasks - 1)
      initial = [self_weight if j == own_index else other for j in range(num_tasks)]
    self.alpha = tf.Variable(initial, dtype=tf.float32, name="alpha")

  def __call__(self, columns):
    """columns [..., K, H] -> [..., H]."""
    return tf.einsum("j,...jh->...h", tf.cast(self.alpha, columns.dtype), columns)


class CrossStitchNetwork(SharedTrunk):
  """Outputs one representation per task, named by the task; the task's head reads it."""

  def __init__(self, input_size, tasks, *, layers, hidden_size, seed, self_weight=0.9,
               feature="x", name=None):
    super().__init__(name=name)
    require_positive("layers", layers)
    require_positive("hidden_size", hidden_size)
    if not 0.0 <= self_weight <= 1.0:
      raise ConfigError(f"cross-stitch self_weight must be in [0, 1], got {self_weight}.")
    self.feature = feature
    self.tasks = tuple(tasks)
    k = len(self.tasks)
    self.columns = {
        t: [Linear(input_size if l == 0 else hidden_size, hidden_size,
                   seed=seed + 1000 * l + i, name=f"{t}_layer_{l}") for l in range(layers)]
        for i, t in enumerate(self.tasks)}
    self.units = [{t: CrossStitchRow(k, i, self_weight=self_weight, name=f"stitch_{l}_{t}")
                   for i, t in enumerate(self.tasks)} for l in range(layers)]
    self.output_sizes = {t: hidden_size for t in self.tasks}

  def __call__(self, features, *, training, seed):
    del training, seed
    x = features[self.feature]
    inputs = {t: x for t in self.tasks}
    for l, unit in enumerate(self.units):
      columns = tf.stack([tf.nn.relu(self.columns[t][l](inputs[t])) for t in self.tasks],
                         axis=-2)  # [B, K, H]
      inputs = {t: unit[t](columns) for t in self.tasks}
    return inputs

  def gate_widths(self):
    """Each unit's rows, reported as gates "stitch_L_TASK" (L = 1..layers) over the tasks."""
    return {f"stitch_{l + 1}_{t}": len(self.tasks) for l in range(len(self.units))
            for t in self.tasks}

  def gate_columns(self):
    return {name: tuple(f"from_{t}" for t in self.tasks) for name in self.gate_widths()}

  def gate_weights(self, features, representations=None):
    """{"stitch_L_TASK": task's row of unit L, alpha [K], repeated for each example
    [B, K]}: learned, not computed from the example (the evaluation reports alpha itself)."""
    del representations
    rows = tf.shape(features[self.feature])[:-1]
    return {f"stitch_{l + 1}_{t}": tf.broadcast_to(
                tf.cast(unit[t].alpha, features[self.feature].dtype),
                tf.concat([rows, [len(self.tasks)]], 0))
            for l, unit in enumerate(self.units) for t in self.tasks}

  def task_parts(self):
    """{task: its row of the last cross-stitch unit} (the only part one task's loss alone
    reaches)."""
    return {t: self.units[-1][t] for t in self.tasks}
