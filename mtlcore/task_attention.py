"""TaskAttentionNetwork: MTAN (Liu et al. 2019), one shared network and, for each task, a
soft-attention mask on each of its layers.

  features[feature] [B, input_size]
    -> shared layer l = 1..L: s_l = relu(s_{l-1} W_l + b_l) [B, hidden_size] (s_0: features);
    -> task k's attention at layer l: u = s_l (l = 1) or [s_l ; t_k,l-1] (concatenated),
       a_k,l = sigmoid(relu(u F_kl + c_kl) G_kl + d_kl) [B, hidden_size] (values in (0, 1)),
       t_k,l = a_k,l * s_l (elementwise);
    -> {task k: t_k,L} [B, hidden_size].

The paper's attention module over convolutional features is two 1x1 convolutions (ReLU, then
sigmoid) on the shared block's features concatenated with the task's attended features of the
block below, brought to the same size by a task-specific convolution; over feature vectors
the two are already the same size, so they are concatenated as they are and the 1x1
convolutions are dense layers of `hidden_size` units.

Every axis but the last is a batch axis (e.g. one vector per token, [B, T, input_size]).
Task k's attention layers are its part of the trunk (`task_parts`, mtlcore.ownership): its
masks feed only its own representation, so its loss alone reaches them, and a step of another
task leaves them and their optimizer slots bitwise unchanged. The shared layers are shared:
every task's loss reaches them through its masks. Every layer Glorot-uniform, biases zero (a
mask starts near one half).
"""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import Linear
from mtlcore.model import SharedTrunk


class AttentionMask(tf.Module):
  """One task's attention module at one layer: `__call__(u [B, input_size])` -> the mask
  [B, hidden_size], sigmoid(relu(u F + c) G + d)."""

  def __init__(self, input_size, hidden_size, *, seed, name=None):
    super().__init__(name=name)
    self.hidden = Linear(input_size, hidden_size, seed=seed, name="hidden")
    self.mask = Linear(hidden_size, hidden_size, seed=seed + 1, name="mask")

  def __call__(self, u):
    return tf.sigmoid(self.mask(tf.nn.relu(self.hidden(u))))


class TaskAttentionNetwork(SharedTrunk):
  """Outputs one representation per task, named by the task; the task's head reads it."""

  def __init__(self, input_size, tasks, *, layers, hidden_size, seed, feature="x", name=None):
    super().__init__(name=name)
    require_positive("layers", layers)
    require_positive("hidden_size", hidden_size)
    self.feature = feature
    self.tasks = tuple(tasks)
    self.shared = [Linear(input_size if l == 0 else hidden_size, hidden_size, seed=seed + l,
                          name=f"shared_{l}") for l in range(layers)]
    self.attention = {
        t: [AttentionMask(hidden_size if l == 0 else 2 * hidden_size, hidden_size,
                          seed=seed + 1000 * (i + 1) + 2 * l, name=f"{t}_attention_{l}")
            for l in range(layers)]
        for i, t in enumerate(self.tasks)}
    self.output_sizes = {t: hidden_size for t in self.tasks}

  def masks(self, features):
    """{task: [mask [B, hidden_size] of each layer]} on a batch."""
    return self._run(features)[1]

  def gate_widths(self):
    """Each task's masks, reported as a gate "TASK_mask" with a column per layer."""
    return {f"{t}_mask": len(self.shared) for t in self.tasks}

  def gate_columns(self):
    return {f"{t}_mask": tuple(f"layer_{l + 1}" for l in range(len(self.shared)))
            for t in self.tasks}

  def gate_weights(self, features, representations=None):
    """{"TASK_mask": each layer's mask averaged over its units [B, layers]} on a batch (the
    evaluation reports its mean: how much of each shared layer the task lets through). The
    masks are not among the outputs: computed again (`call_with_gates` gives both from one
    pass)."""
    del representations
    return _mask_means(self.masks(features))

  def call_with_gates(self, features, *, training, seed):
    del training, seed
    attended, masks = self._run(features)
    return attended, _mask_means(masks)

  def _run(self, features):
    s = features[self.feature]
    attended, masks = {}, {t: [] for t in self.tasks}
    for l, layer in enumerate(self.shared):
      s = tf.nn.relu(layer(s))
      for t in self.tasks:
        u = s if l == 0 else tf.concat([s, attended[t]], axis=-1)
        mask = self.attention[t][l](u)
        masks[t].append(mask)
        attended[t] = mask * s
    return attended, masks

  def __call__(self, features, *, training, seed):
    del training, seed
    return self._run(features)[0]

  def task_parts(self):
    return {t: list(modules) for t, modules in self.attention.items()}


def _mask_means(masks):
  """{"TASK_mask": [B, layers]}: each layer's mask [B, units] averaged over its units."""
  return {f"{t}_mask": tf.stack([tf.reduce_mean(m, -1) for m in layers], -1)
          for t, layers in masks.items()}
