"""The trunk architectures that give each task a representation of its own, by name.

`task_mixture` builds, for a task set that offers them, the module behind
`--architecture=NAME` (names: mtlcore.choices.ARCHITECTURES; "hard" is the task set's own
shared trunk and is not built here):

  moe           MixtureOfExperts(one_gate=True): experts under one shared softmax gate;
  mmoe          MixtureOfExperts: experts and a softmax gate per task (Ma et al. 2018);
  cgc, ple      ProgressiveLayeredExtraction: shared and task experts, one level (cgc) or
                `levels` (Tang et al. 2020);
  cross_stitch  CrossStitchNetwork: a column of `layers` ReLU layers per task, learned
                cross-stitch units between them (Misra et al. 2016);
  mtan          TaskAttentionNetwork: `layers` shared ReLU layers and each task's attention
                mask on each (Liu et al. 2019);
  dselect_k     DSelectK: MMoE's experts, each task's gate a DSelect-k gate that learns to
                weigh at most `selected_experts` of them (Hazimeh et al. 2021).

Each reads `features[feature]` of shape [..., input_size] (a vector per example, or per
token of a sentence: every axis but the last is a batch axis) and returns {task: [...,
size]}, with its task-owned parts in `task_parts()` (mtlcore.ownership).
"""

import dataclasses

from mtlcore import dselect_k
from mtlcore.choices import ARCHITECTURES
from mtlcore.cross_stitch import CrossStitchNetwork
from mtlcore.errors import ConfigError, require_positive
from mtlcore.mixture_of_experts import MixtureOfExperts
from mtlcore.progressive_layered_extraction import ProgressiveLayeredExtraction
from mtlcore.task_attention import TaskAttentionNetwork


@dataclasses.dataclass(frozen=True)
class MixtureSizes:
  """The sizes of the architectures (each reads the ones it has).

  Attributes:
    experts: moe, mmoe, dselect_k: the number of experts (dselect_k: a power of two).
    expert_size: moe, mmoe, cgc, ple, dselect_k: units of each expert (a ReLU layer).
    shared_experts: cgc, ple: shared experts per level.
    task_experts: cgc, ple: each task's own experts per level.
    levels: ple: extraction levels (cgc is one).
    layers: cross_stitch: layers of each column; mtan: shared layers.
    hidden_size: cross_stitch, mtan: units of each of those layers.
    self_weight: cross_stitch: each unit's initial weight of a task's own column.
    cross_task_gradients: ple: the shared gate passes every task's loss into the other
      tasks' lower experts, as in the paper.
    selected_experts: dselect_k: k, the most experts each task's gate weighs on an example.
  """
  experts: int = 8
  expert_size: int = 16
  shared_experts: int = 1
  task_experts: int = 1
  levels: int = 2
  layers: int = 2
  hidden_size: int = 16
  self_weight: float = 0.9
  cross_task_gradients: bool = False
  selected_experts: int = 2

  def __post_init__(self):
    for name in ("experts", "expert_size", "shared_experts", "task_experts", "levels",
                 "layers", "hidden_size", "selected_experts"):
      require_positive(name, getattr(self, name))
    if not 0.0 <= float(self.self_weight) <= 1.0:
      raise ConfigError(f"self_weight must be in [0, 1], got {self.self_weight}.")

  def check(self, architecture):
    """ConfigError where these sizes cannot build `architecture` (dselect_k: experts a power
    of two, selected_experts at most experts)."""
    if architecture == "dselect_k":
      dselect_k.check_sizes(self.experts, self.selected_experts)

  def output_size(self, architecture):
    """The size of each task's representation under `architecture`."""
    return self.hidden_size if architecture in ("cross_stitch", "mtan") else self.expert_size


def task_mixture(architecture, input_size, tasks, sizes, *, seed, feature="x", name=None):
  """The SharedTrunk of `architecture` (not "hard") over `tasks`, sized by `sizes`
  (MixtureSizes); its representations are named by the tasks."""
  tasks = tuple(tasks)
  if architecture not in ARCHITECTURES or architecture == "hard":
    raise ConfigError(f"architecture must be one of {ARCHITECTURES[1:]} here, got "
                      f"{architecture!r}.")
  if not tasks:
    raise ConfigError(f"architecture {architecture!r} needs at least one task to mix for.")
  if architecture in ("moe", "mmoe"):
    return MixtureOfExperts(input_size, tasks, num_experts=sizes.experts,
                            expert_size=sizes.expert_size, one_gate=architecture == "moe",
                            seed=seed, feature=feature, name=name)
  if architecture in ("cgc", "ple"):
    return ProgressiveLayeredExtraction(
        input_size, tasks, levels=1 if architecture == "cgc" else sizes.levels,
        shared_experts=sizes.shared_experts, task_experts=sizes.task_experts,
        expert_size=sizes.expert_size, seed=seed, feature=feature,
        cross_task_gradients=sizes.cross_task_gradients, name=name)
  if architecture == "dselect_k":
    return dselect_k.DSelectK(input_size, tasks, num_experts=sizes.experts,
                              expert_size=sizes.expert_size,
                              selections=sizes.selected_experts, seed=seed, feature=feature,
                              name=name)
  if architecture == "cross_stitch":
    return CrossStitchNetwork(input_size, tasks, layers=sizes.layers,
                              hidden_size=sizes.hidden_size,
                              self_weight=float(sizes.self_weight), seed=seed,
                              feature=feature, name=name)
  return TaskAttentionNetwork(input_size, tasks, layers=sizes.layers,
                              hidden_size=sizes.hidden_size, seed=seed, feature=feature,
                              name=name)


def multiply_adds(architecture, input_size, num_tasks, sizes):
  """The multiply-adds of `architecture`'s matmuls per input vector (every expert, gate,
  column and mask layer sees each vector once; the mixing of their outputs is left out):
  its forward FLOPs per vector are twice this. Equal to the number of entries of its weight
  matrices (tests/test_architectures.py checks that against the built module)."""
  k, i, e = num_tasks, input_size, sizes.expert_size
  if architecture in ("moe", "mmoe"):
    gates = 1 if architecture == "moe" else k
    return sizes.experts * i * e + gates * i * sizes.experts
  if architecture == "dselect_k":  # Per task: k selectors of log2 E digits, k weights.
    digits = max(int(sizes.experts).bit_length() - 1, 0)
    return sizes.experts * i * e + k * i * sizes.selected_experts * (digits + 1)
  if architecture in ("cgc", "ple"):
    levels = 1 if architecture == "cgc" else sizes.levels
    m_s, m_t, total = sizes.shared_experts, sizes.task_experts, 0
    for j in range(levels):
      width = i if j == 0 else e
      total += (m_s + k * m_t) * width * e + k * width * (m_t + m_s)
      if j < levels - 1:
        total += width * (k * m_t + m_s)
    return total
  h, layers = sizes.hidden_size, sizes.layers
  stack = i * h + (layers - 1) * h * h  # One column, or the shared network.
  if architecture == "cross_stitch":
    return k * stack
  if architecture == "mtan":
    masks = k * (h * h + (layers - 1) * 2 * h * h + layers * h * h)
    return stack + masks
  raise ConfigError(f"no multiply-add count for architecture {architecture!r}.")
