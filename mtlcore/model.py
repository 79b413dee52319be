"""SharedTrunk, TaskHead and MultiTaskModel: who owns which variables.

A multi-task model is one trunk shared by all tasks and one head per task. The trunk maps
features to a dict of named representations (e.g. {"layer1": ..., "layer2": ...}); each head
reads one of them. Trunks and heads are tf.Modules built from mtlcore's layers, Keras 3 layers
or both (mtlcore.keras_parts). Every variable has one owner (mtlcore.ownership.OwnerMap): the
shared set, or one task (its head, and the trunk parts that belong to it).
`MultiTaskModel.variables_for(task)` is the exact set a step for that task may change.
Construction checks that no variable belongs to two owners, or to none, so that guarantee
cannot be broken by accident.
"""

import inspect
from collections.abc import Mapping
from typing import NamedTuple

import tensorflow as tf

from mtlcore import keras_parts
from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED, OwnerMap


class HeadInputs(NamedTuple):
  """What `MultiTaskModel.forward(head_inputs=True)` adds: `copies` {task: the copy of its
  representation that task's head read} and `shared_reads` {task: names of the trunk's
  shared variables its head read itself, not through its representation} (empty for a head
  that reads only its representation)."""
  copies: dict
  shared_reads: dict


class SharedTrunk(tf.Module):
  """Base class of trunks.

  Subclasses set `self.output_sizes`, a dict from representation name to its last-axis size,
  and implement `__call__(features, *, training, seed)` returning a dict with those keys.
  `seed` is an int [2] tensor for dropout (see mtlcore.layers.dropout). Float features arrive
  in `compute_dtype` (set by the MultiTaskModel); a trunk that makes floats from other inputs
  (e.g. embedding lookups) makes them in that type too (mtlcore.precision).
  """

  output_sizes: Mapping[str, int] = {}
  compute_dtype = tf.float32
  # Whether its gates' weights can be exactly zero (DSelect-k's): the evaluation then also
  # reports each gate's mean number of non-zero columns per example ("gates/GATE/nonzero").
  sparse_gates = False

  def __call__(self, features, *, training, seed):
    raise NotImplementedError

  def variables_of(self, representation):
    """The trainable variables of the layer that outputs `representation` (GradNorm's "last
    shared layer"). This default: all of the trunk's (its Keras layers' too); a trunk of
    several layers narrows it."""
    del representation
    return list(self.trainable_variables) + keras_parts.KerasParts(self, "Trunk").trainable

  def task_parts(self):
    """{task name: the trunk's parts that belong to that task} (tf.Modules, Keras layers or
    variables, or lists of them): a task's gate, experts or tower. A step of another task
    never changes them. This default: none (a hard-shared trunk)."""
    return {}

  def gate_widths(self):
    """{gate name: the number of experts it weighs} of a trunk that mixes experts with
    softmax gates (MMoE, PLE), or of any other weights that say how it mixes (cross-stitch
    units, MTAN's masks); the engine's evaluation reports each gate's mean weight per
    column (mtlcore.evaluation). This default: none."""
    return {}

  def gate_columns(self):
    """{gate name: the names of its columns}, in `gate_weights`' order: the evaluation
    reports "gates/NAME/COLUMN". This default: expert_0, expert_1, ... of `gate_widths`."""
    return {name: tuple(f"expert_{e}" for e in range(width))
            for name, width in self.gate_widths().items()}

  def gate_weights(self, features, representations=None):
    """{gate name: its weights [N, width]} on a batch: one row per example (N = B), or per
    real token for a trunk over sentences (see `gate_widths`). `representations`
    (optional): this trunk's inference-mode outputs on the same batch, when the caller has
    them; a trunk whose gates read one of its own layers takes it from there instead of
    running its layers again. This default: none."""
    del features, representations
    return {}

  def call_with_gates(self, features, *, training, seed):
    """(`__call__`'s representations, `gate_weights`) from one pass over a batch. This
    default: the call, then `gate_weights` given its representations; a trunk whose gates are
    values inside its pass (PLE's levels, MTAN's masks) returns them instead of running its
    layers again."""
    outputs = self(features, training=training, seed=seed)
    if "representations" in inspect.signature(self.gate_weights).parameters:
      return outputs, self.gate_weights(features, outputs)
    return outputs, self.gate_weights(features)  # A trunk written before that argument.


class TaskHead(tf.Module):
  """Base class of heads.

  `reads` names the trunk representation the head consumes. Subclasses implement
  `__call__(representation, features, *, training, seed)` and return the task's predictions
  (logits or values); the matching Task's loss interprets them.
  """

  def __init__(self, *, reads, name=None):
    super().__init__(name=name)
    self.reads = reads

  def __call__(self, representation, features, *, training, seed):
    raise NotImplementedError


class MultiTaskModel(tf.Module):
  """A trunk shared by all tasks and one head per task."""

  def __init__(self, trunk, heads, name=None, compute_dtype=tf.float32, task_parts=None):
    """Args:
      trunk: a SharedTrunk.
      heads: dict from task name to TaskHead; the names are the model's tasks.
      name: module name.
      compute_dtype: the float type the trunk and heads compute in (mtlcore.precision);
        see `set_compute_dtype`.
      task_parts: {task: the trunk's parts that belong to it}; default the trunk's
        `task_parts()`.
    Raises:
      ConfigError: no heads, a head reading a representation the trunk lacks, a variable
        owned twice (by two heads, a head and the trunk, two tasks' trunk parts) or by no
        part, an unbuilt Keras layer or one the model cannot track.
    """
    super().__init__(name=name)
    if not heads:
      raise ConfigError("A MultiTaskModel needs at least one task head.")
    self.trunk = trunk
    self.heads = dict(heads)
    for task, head in self.heads.items():
      if head.reads not in trunk.output_sizes:
        raise ConfigError(
            f"Head of task '{task}' reads '{head.reads}', but the trunk only produces "
            f"{sorted(trunk.output_sizes)}.")
    # A plain object: tf.Module and checkpoints do not track it (mtlcore.ownership).
    self._owners = OwnerMap(trunk, self.heads, task_parts)
    covered = {v.ref() for v in self._owners.variables(())}
    covered.update(v.ref() for t in self.heads for v in self._owners.variables_for(t))
    stray = [v.name for v in self.trainable_variables if v.ref() not in covered]
    if stray:
      raise ConfigError(f"Variables owned by neither the trunk nor a head: {stray}.")
    self.set_compute_dtype(compute_dtype)

  @property
  def owners(self):
    """The model's mtlcore.ownership.OwnerMap."""
    return self._owners

  def set_compute_dtype(self, dtype):
    """Computes in `dtype` from now on: float features are cast to it before the trunk, and
    every head's float output back to float32 (losses, metrics, decoding run in float32).
    The variables stay float32. Keras layers get the matching dtype policy
    (mixed_bfloat16 for bf16)."""
    self.compute_dtype = self.trunk.compute_dtype = tf.as_dtype(dtype)
    keras_parts.set_compute_dtype(self._owners.keras_layers, self.compute_dtype)

  def with_tasks(self, tasks):
    """A MultiTaskModel of this trunk and the heads of `tasks` (the same modules, not copies),
    in this compute type: e.g. the model an export serves, without an auxiliary task's head
    and its variables."""
    tasks = self.check_tasks(tasks)
    return MultiTaskModel(self.trunk, {t: self.heads[t] for t in tasks}, name=self.name,
                          compute_dtype=self.compute_dtype,
                          task_parts={t: p for t, p in self.trunk.task_parts().items()
                                      if t in tasks})

  @property
  def task_names(self):
    return tuple(self.heads)

  def check_tasks(self, tasks):
    """Returns `tasks` as a tuple, raising ConfigError naming any task without a head."""
    tasks = tuple(tasks)
    unknown = [t for t in tasks if t not in self.heads]
    if unknown:
      raise ConfigError(
          f"Unknown task(s) {unknown}; this model has tasks {list(self.heads)}.")
    return tasks

  def variables_for(self, task):
    """The trainable variables a step of `task` may change: the trunk's shared ones and the
    task's own trunk parts, then its head's (Keras layers' included)."""
    (task,) = self.check_tasks([task])
    return tuple(self._owners.variables_for(task))

  def variables_to_train(self):
    """Every trainable variable of the model, its Keras layers' included, in the owner map's
    order (for a model without Keras layers, `trainable_variables`' order)."""
    return tuple(self._owners.variables(self.trainable_variables))

  def _in_compute_dtype(self, features):
    """`features` with the float ones cast to the compute type (what the trunk reads)."""
    return {k: tf.cast(v, self.compute_dtype) if tf.as_dtype(v.dtype).is_floating else v
            for k, v in features.items()}

  def gate_weights(self, features):
    """The trunk's softmax gates on a batch (SharedTrunk.gate_weights, e.g. MMoE's), each
    [N, width] float32 (a row per example, or per real token), the features cast as
    `forward` casts them."""
    gates = self.trunk.gate_weights(self._in_compute_dtype(features))
    return {name: tf.cast(w, tf.float32) for name, w in gates.items()}

  def predictions_and_gates(self, features, *, tasks=None):
    """Inference-mode ({task: predictions}, `gate_weights`) from one pass through the
    trunk (SharedTrunk.call_with_gates): the gates are not computed by running the trunk's
    layers a second time. Applies the forward pass's state updates as `__call__` does."""
    outputs, updates, _, gates, _ = self._pass(features, tasks=tasks, training=False,
                                               seed=None, with_gates=True)
    for i, value in updates:
      self._owners.state[i][0].assign(value)
    return outputs, {name: tf.cast(w, tf.float32) for name, w in gates.items()}

  def forward(self, features, *, tasks=None, training=False, seed=None,
              representations=False, head_inputs=False):
    """Runs the trunk once and the heads of `tasks` (default: all), applying no state update.

    Args:
      features: dict of feature tensors; float ones are cast to the compute type.
      tasks: the heads to run.
      training: training-mode behaviour (dropout, batch statistics).
      seed: int [2] step seed for dropout (mtlcore's and Keras'); required when training.
      representations: also return the trunk's representations.
      head_inputs: also return a HeadInputs: {task: the representation its head read}, a
        copy per head (tf.identity): the gradient of a sum of task losses with respect to
        task t's copy is task t's loss's alone, so one backward pass gives every task's
        gradient on the representations the heads read; and which shared trunk variables a
        head read itself (the part of its task's gradient that no representation carries).
    Returns:
      (predictions, updates): dict from task name to that head's predictions (float32), and
      [(index into `owners.state`, new value)] for each piece of Keras state (moving
      statistics) the pass would assign; the caller applies them or not. Without Keras
      parts, updates is empty and the pass is exactly the plain call. With
      `representations`, a third item: the trunk's {name: representation}, in the compute
      type; with `head_inputs`, a last item: the HeadInputs.
    """
    outputs, updates, trunk_outputs, _, read = self._pass(
        features, tasks=tasks, training=training, seed=seed, with_gates=False,
        head_inputs=head_inputs)
    out = (outputs, updates) + ((trunk_outputs,) if representations else ())
    return out + ((read,) if head_inputs else ())

  def _pass(self, features, *, tasks, training, seed, with_gates, head_inputs=False):
    """`forward`'s (predictions, updates, the trunk's representations), with `with_gates`
    the trunk's gates from the same pass (else {}), and with `head_inputs` its HeadInputs
    (else None)."""
    tasks = self.task_names if tasks is None else self.check_tasks(tasks)
    if seed is None:
      if training:
        raise ConfigError("Training-mode calls need a dropout seed.")
      seed = tf.zeros([2], tf.int64)
    low = self._in_compute_dtype(features)

    trunk_outputs, gates, read, shared_reads = {}, {}, {}, {}

    def run():
      if with_gates:
        representations, weights = self.trunk.call_with_gates(low, training=training, seed=seed)
        gates.update(weights)
      else:
        representations = self.trunk(low, training=training, seed=seed)
      trunk_outputs.update(representations)
      outputs = {}
      for t in tasks:
        x = trunk_outputs[self.heads[t].reads]
        if not head_inputs:
          outputs[t] = self.heads[t](x, features, training=training, seed=seed)
          continue
        read[t] = tf.identity(x)
        # At trace time only: which variables the head reads (no op of its own).
        with tf.GradientTape(watch_accessed_variables=True) as seen:
          outputs[t] = self.heads[t](read[t], features, training=training, seed=seed)
        shared_reads[t] = tuple(v.name for v in seen.watched_variables()
                                if v.ref() in trunk_refs and self._owners.owner(v) is SHARED)
      return tf.nest.map_structure(
          lambda x: tf.cast(x, tf.float32) if x.dtype.is_floating else x, outputs)

    trunk_refs = {v.ref() for v in self._owners.trunk_variables} if head_inputs else set()
    if not self._owners.has_keras:
      outputs, updates = run(), []
    else:
      stateless = keras_parts.StatelessForward(
          [v for v, _ in self._owners.state], self._owners.seeds, seed)
      with stateless as updates:
        outputs = run()
    return (outputs, updates, trunk_outputs, gates,
            HeadInputs(read, shared_reads) if head_inputs else None)

  def __call__(self, features, *, tasks=None, training=False, seed=None):
    """Runs the trunk once and the heads of `tasks` (default: all), as `forward`, and applies
    its state updates at once (as a Keras layer's own call would).

    Returns:
      dict from task name to that head's predictions.
    """
    outputs, updates = self.forward(features, tasks=tasks, training=training, seed=seed)
    for i, value in updates:
      self._owners.state[i][0].assign(value)
    return outputs
