"""DSelectK: shared experts and, per task, a DSelect-k gate (Hazimeh et al. 2021) that learns
to give at most k of them non-zero weight.

  features[feature] [B, input_size]
    -> experts: E ReLU layers, each [B, expert_size], shared by every task (as MMoE's);
    -> per task, k single-expert selectors on each example:
         z = x Z + c                  [B, k, m]   (m = log2 E binary digits per selector),
         r_i[e] = prod_j (S(z_ij) if bit j of e is 1 else 1 - S(z_ij))     [B, k, E],
       with S the smooth step (0 below -gamma/2, 1 above gamma/2, the cubic
       3 t / (2 gamma) - 2 t^3 / gamma^3 + 1/2 between), and the selectors' weights
       alpha = softmax(x A + a) [B, k];
    -> gate = sum_i alpha_i r_i [B, E] (non-negative, summing to 1, at most k non-zero once
       every S is 0 or 1);
    -> {task: sum_e gate[:, e] expert_e(x)} [B, expert_size].

Each selector's weights are a product of m smooth steps: while a z_ij lies inside
(-gamma/2, gamma/2) the selector spreads its weight; once outside, S is exactly 0 or 1 and
the selector picks one expert, where the gradient through S is zero. The gate is
differentiable everywhere (no top-k), so the joint and alternating steps train it with the
rest of the model. Over token sequences every axis but the last is a batch axis ([B, T, ...]:
each token gated on its own).

As in the authors' layer: Z, c uniform in [-gamma/100, gamma/100] (every selector starts
spread nearly evenly), A, a uniform in [-0.05, 0.05], gamma = 1. Each task's selectors are its
own part of the trunk (`task_parts`, mtlcore.ownership); the experts are shared.

Left out, with the reason:
  - E must be a power of two (ConfigError otherwise). With other E the binary codes reach
    2^m > E experts, and the paper keeps the weight off the unreachable ones with a penalty
    added to the loss; mtlcore's task losses take no such trunk term.
  - The paper's optional entropy regulariser (its code's default is off), for the same reason.
  - The static (task-only) gate: this module's gates read the example, as MMoE's.
"""

import math

import tensorflow as tf

from mtlcore.errors import ConfigError, require_positive
from mtlcore.layers import Linear
from mtlcore.mixture_of_experts import GatedExperts


def smooth_step(t, gamma):
  """The cubic smooth step of `t` (any shape): 0 for t <= -gamma/2, 1 for t >= gamma/2,
  3 t / (2 gamma) - 2 t^3 / gamma^3 + 1/2 in between (continuously differentiable)."""
  cubic = 1.5 * t / gamma - 2.0 * t ** 3 / gamma ** 3 + 0.5
  return tf.where(t <= -gamma / 2, tf.zeros_like(t),
                  tf.where(t >= gamma / 2, tf.ones_like(t), cubic))


def binary_codes(num_experts):
  """bool [E, m]: row e is e's binary digits, most significant first (m = log2 E)."""
  digits = int(math.log2(num_experts))
  return tf.constant([[(e >> (digits - 1 - j)) & 1 == 1 for j in range(digits)]
                      for e in range(num_experts)])


def _assign_uniform(layer, bound, seed):
  """Sets a Linear layer's weights and bias uniform in [-bound, bound] (from `seed`)."""
  for i, variable in enumerate((layer.w, layer.b)):
    variable.assign(tf.random.stateless_uniform(variable.shape, [seed, i + 1], -bound, bound))


def check_sizes(num_experts, selections):
  """ConfigError unless `num_experts` is a power of two (at least 2) and 1 <= `selections`
  <= `num_experts`."""
  if isinstance(num_experts, bool) or not isinstance(num_experts, int) or num_experts < 2 \
      or num_experts & (num_experts - 1):
    raise ConfigError(f"experts must be a power of two, at least 2, for dselect_k (its "
                      f"selectors' binary codes reach 2^m experts), got {num_experts!r}.")
  require_positive("selected_experts", selections)
  if selections > num_experts:
    raise ConfigError(f"selected_experts must be at most experts={num_experts}, got "
                      f"{selections}.")


class SelectorGate(tf.Module):
  """One task's DSelect-k gate: `__call__(x [..., input_size])` -> weights [..., E]."""

  def __init__(self, input_size, num_experts, selections, *, gamma, seed, name=None):
    super().__init__(name=name)
    self.num_experts, self.selections, self.gamma = num_experts, selections, float(gamma)
    self.digits = int(math.log2(num_experts))
    self.codes = binary_codes(num_experts)
    self.selector_logits = Linear(input_size, selections * self.digits, seed=seed,
                                  name="selector_logits")
    self.selector_weights = Linear(input_size, selections, seed=seed + 1,
                                   name="selector_weights")
    _assign_uniform(self.selector_logits, self.gamma / 100, seed)
    _assign_uniform(self.selector_weights, 0.05, seed + 1)

  def selectors(self, x):
    """Each single-expert selector's weights [..., k, E] (each row sums to 1)."""
    z = self.selector_logits(x)
    z = tf.reshape(z, tf.concat([tf.shape(z)[:-1], [self.selections, 1, self.digits]], 0))
    s = smooth_step(z, self.gamma)  # [..., k, 1, m]
    return tf.reduce_prod(tf.where(self.codes, s, 1.0 - s), axis=-1)  # [..., k, E]

  def __call__(self, x):
    alpha = tf.nn.softmax(self.selector_weights(x))  # [..., k]
    return tf.einsum("...k,...ke->...e", alpha, self.selectors(x))


class DSelectK(GatedExperts):
  """Outputs one representation per task, named by the task; the task's head reads it."""

  sparse_gates = True  # The evaluation reports each gate's experts in use per example.

  def __init__(self, input_size, tasks, *, num_experts, expert_size, selections, seed,
               gamma=1.0, feature="x", name=None):
    """Args: `num_experts` E (a power of two, at least 2); `selections` k (1 <= k <= E): the
    most experts each task's gate weighs on an example; `gamma` the smooth step's width."""
    check_sizes(num_experts, selections)
    if not gamma > 0:
      raise ConfigError(f"gamma must be positive, got {gamma!r}.")
    super().__init__(input_size, tasks, num_experts=num_experts, expert_size=expert_size,
                     seed=seed, feature=feature, name=name)
    self.gates = {t: SelectorGate(input_size, num_experts, selections, gamma=gamma,
                                  seed=seed + 1000 * (i + 1), name=f"gate_{t}")
                  for i, t in enumerate(self.tasks)}
