"""OwnerMap: the one answer to "which part of the model owns this variable".

Every variable of a MultiTaskModel has exactly one owner: the shared set (`SHARED`), or one
task: its head's variables, and the parts inside the trunk that belong to it (a trunk names
them in `task_parts()`: a task's gate, its experts, its tower). Everything that decides what a
step may change reads this map and nothing else:

- the construction check (no variable owned twice; none owned by nobody);
- `variables_for(task)`: what an alternating step of `task` trains and its optimizer's slots;
- the joint step's split between shared variables (a gradient method's aggregated direction)
  and task-owned ones (their own task's gradient), and the freezing of the variables of tasks
  with no label in a batch;
- which non-trainable state (a Keras BatchNormalization's moving statistics) a step updates.

Variables are `tf.Variable`s; a Keras layer's are the tf.Variables under its Keras variables
(mtlcore.keras_parts). The order is fixed and, for a model without Keras parts or task parts,
the order of earlier versions (optimizer slots are indexed by it, so old checkpoints resume
bitwise): `variables()` is the model tf.Module's own `trainable_variables` order, then Keras
variables (trunk first, then heads by task); `variables_for(task)` is the trunk's, then the
head's.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.keras_parts import KerasParts

SHARED = None  # The owner of the trunk's variables that no task part claims.


def _flat_variables(part, where):
  """The trainable tf.Variables of a task part: a tf.Module, a Keras layer or variable, a
  tf.Variable, or a list of them."""
  found = []
  for item in tf.nest.flatten(part):
    if isinstance(item, tf.Module):
      found += list(item.trainable_variables) + KerasParts(item, where).trainable
    elif isinstance(item, tf.Variable):
      found.append(item)
    elif hasattr(item, "trainable_variables"):  # A Keras layer.
      found += [v.value for v in item.trainable_variables]
    elif hasattr(item, "value") and isinstance(getattr(item, "value"), tf.Variable):
      found.append(item.value)  # A Keras variable.
    else:
      raise ConfigError(f"{where}: a task part must be a tf.Module, a Keras layer or a "
                        f"variable, got {type(item).__name__}.")
  return found


class OwnerMap:
  """Which part owns each trainable variable and each piece of Keras state of a model.

  A plain object: neither tf.Module nor a checkpoint tracks it, so the tf.Variables under
  Keras variables are saved once, through their layers.
  """

  def __init__(self, trunk, heads, task_parts=None):
    """Args:
      trunk: the model's SharedTrunk.
      heads: dict task name -> TaskHead.
      task_parts: dict task name -> the trunk's parts that belong to that task (tf.Modules,
        Keras layers or variables, or lists of them); default the trunk's `task_parts()`.
    Raises:
      ConfigError: a variable owned by two heads, by a head and the trunk, by two tasks'
        trunk parts; a task part naming an unknown task or holding no trunk variable; any
        of mtlcore.keras_parts' refusals (an unbuilt Keras layer, an untracked holder).
    """
    task_parts = dict(trunk.task_parts() if task_parts is None else task_parts)
    self._owner = {}
    trunk_keras = KerasParts(trunk, "Trunk")
    self._trunk = list(trunk.trainable_variables) + trunk_keras.trainable
    trunk_refs = {v.ref() for v in self._trunk}
    unknown = [t for t in task_parts if t not in heads]
    if unknown:
      raise ConfigError(f"The trunk's task parts name unknown task(s) {unknown}; the tasks "
                        f"are {list(heads)}.")
    for task, part in task_parts.items():
      for v in _flat_variables(part, f"Trunk part of task '{task}'"):
        if v.ref() not in trunk_refs:
          raise ConfigError(f"Trunk part of task '{task}' holds variable {v.name}, which is "
                            f"not the trunk's.")
        if self._owner.get(v.ref(), task) != task:
          raise ConfigError(f"Variable {v.name} is in the trunk parts of tasks "
                            f"'{self._owner[v.ref()]}' and '{task}'.")
        self._owner[v.ref()] = task
    self._heads = {}
    self._state = [(v, SHARED) for v in trunk_keras.state]
    self._seeds = list(trunk_keras.seeds)
    self._keras_layers = list(trunk_keras.layers)
    self._keras_extra = list(trunk_keras.trainable)  # Keras variables, after the module's.
    for task, head in heads.items():
      where = f"Head of task '{task}'"
      keras = KerasParts(head, where)
      variables = list(head.trainable_variables) + keras.trainable
      for v in variables:
        if v.ref() in trunk_refs:
          raise ConfigError(f"{where} shares variable {v.name} with the trunk.")
        if v.ref() in self._owner:
          raise ConfigError(f"Heads of tasks '{self._owner[v.ref()]}' and '{task}' share "
                            f"variable {v.name}.")
        self._owner[v.ref()] = task
      self._heads[task] = variables
      self._keras_extra += keras.trainable
      self._state += [(v, task) for v in keras.state]
      self._seeds += keras.seeds
      self._keras_layers += keras.layers
    layer_ids = [id(l) for l in self._keras_layers]
    if len(set(layer_ids)) != len(layer_ids):
      raise ConfigError("One Keras layer is held by two parts of the model (the trunk and a "
                        "head, or two heads); give each its own layer.")

  def owner(self, variable):
    """The task that owns `variable`, or SHARED."""
    return self._owner.get(variable.ref(), SHARED)

  def variables(self, module_variables):
    """Every trainable variable: `module_variables` (the model tf.Module's own
    trainable_variables, in their order), then the Keras ones."""
    return list(module_variables) + self._keras_extra

  def variables_for(self, task):
    """What a step of `task` may change: the trunk's shared variables and the task's own
    trunk parts (in trunk order), then its head's."""
    return [v for v in self._trunk if self.owner(v) in (SHARED, task)] + self._heads[task]

  @property
  def trunk_variables(self):
    """Every trainable variable of the trunk (shared and task parts), in trunk order."""
    return list(self._trunk)

  @property
  def state(self):
    """[(Keras non-trainable variable, owner)] that a forward pass may assign."""
    return self._state

  @property
  def seeds(self):
    """The Keras seed-generator variables, each given a seed of its own per step."""
    return self._seeds

  @property
  def keras_layers(self):
    """The outermost Keras layers of the trunk and the heads."""
    return self._keras_layers

  @property
  def has_keras(self):
    return bool(self._keras_layers or self._state or self._seeds)

  def check_reads(self, read, where, also=()):
    """Raises ConfigError if a step read a trainable variable (`read`, e.g. a tape's
    watched_variables at trace time) that no part of the model owns, nor `also` (the
    trainer's own, e.g. a weighting's): it would never train."""
    owned = {v.ref() for v in self._trunk}
    owned.update(self._owner)
    owned.update(v.ref() for v in also)
    stray = [v.name for v in read if v.ref() not in owned]
    if stray:
      raise ConfigError(
          f"{where} reads variable(s) {stray} that no part of the model owns (they would never "
          f"train): hold every layer as an attribute of the trunk or a head, or of a tf.Module "
          f"inside them, not in a closure or a plain Python object.")
