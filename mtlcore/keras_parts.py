"""Keras 3 layers inside tf.Modules: found, checked, trained, and their state kept honest.

A Keras 3 variable is not a `tf.Variable` and a Keras layer is not a `tf.Module`, so a
tf.Module's `trainable_variables` never sees them: a trunk holding a `keras.Sequential` would
train nothing of it, silently. This module finds the Keras layers (and bare Keras variables) a
tf.Module holds, anywhere a tf.Module's own walk reaches (attributes, lists, dicts, nested
tf.Modules), and gives the model what it needs to own them:

- their trainable variables, as the `tf.Variable`s Keras keeps under each (`variable.value`),
  which the tape, the optimizer and the owner map use; the checkpoint keeps saving the Keras
  variables themselves, once, under the layer's own path;
- their non-trainable state (e.g. BatchNormalization's moving statistics), which Keras assigns
  in the forward pass. `stateless_forward` runs the forward pass in a `keras.StatelessScope`,
  so those assignments become values the trainer applies beside the optimizer's update (or
  not at all, for a skipped step or a task with no label);
- their random seeds: each `keras.random.SeedGenerator` (e.g. Keras Dropout's) reads, inside
  `stateless_forward`, a seed made from the step's seed, so masks differ per step and per
  replica and replay exactly after a restart, as mtlcore's own dropout does.

A layer must be built when the model is made (its variables exist, so none is created inside
a compiled step); a Keras object the model cannot track (an unbuilt layer, one held inside a
plain Python object) is refused in one line (ConfigError). Nothing here imports Keras unless a
Keras object can exist: a program that never imported `keras` holds none.
"""

import random
import sys

import tensorflow as tf

from mtlcore.errors import ConfigError

# Keras dtype policies of mtlcore's compute types: float variables, computation in the type.
_POLICIES = {tf.float32: "float32", tf.bfloat16: "mixed_bfloat16", tf.float16: "mixed_float16"}
# Seed generator i reads (seed[0] + _SEED_STRIDE * (i + 1), seed[1]): a stream of its own.
_SEED_STRIDE = 1_000_003


def _keras():
  """The keras module if it was imported (else no Keras object can exist), or None."""
  return sys.modules.get("keras")


def _describe(where, path):
  return f"{where} attribute '{'.'.join(str(p) for p in path)}'"


def _plain_holder_contents(value, keras):
  """Variables, modules or Keras objects held inside a plain Python object (one level deep),
  which neither tf.Module nor a checkpoint looks into."""
  kinds = (tf.Variable, tf.Module) + ((keras.Layer, keras.Variable) if keras else ())
  if isinstance(value, (type, tf.Tensor, tf.DType) + kinds) or callable(value):
    return []
  try:
    inside = tf.nest.flatten(list(vars(value).values()))
  except TypeError:  # No __dict__: a number, a string, a slotted object.
    return []
  return [x for x in inside if isinstance(x, kinds)]


def _refuse_regularizers(layer, where, path):
  """ConfigError for a Keras regulariser: Keras adds its penalty to `layer.losses`, which no
  task's loss includes, so it would do nothing, silently."""
  for sub in layer._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
    kinds = ["activity regulariser"] if getattr(sub, "activity_regularizer", None) else []
    kinds += [f"regulariser on {v.path}" for v in sub.trainable_weights
              if getattr(v, "regularizer", None) is not None]
    if kinds:
      raise ConfigError(
          f"{_describe(where, path)}: Keras layer '{sub.name}' has a {kinds[0]}, whose penalty "
          f"Keras keeps in layer.losses, which no task's loss includes (it would do nothing): "
          f"remove it and add the penalty to a task's loss.")


class KerasParts:
  """The Keras layers and variables one tf.Module (a trunk or a head) holds, checked.

  Attributes:
    layers: the Keras layers found, outermost only (a Sequential, not its sublayers).
    trainable: their trainable variables as tf.Variables, in the order found, no repeats.
    state: their non-trainable Keras variables that a forward pass may assign (moving
      statistics), as Keras variables.
    seeds: the state variables of their seed generators (Keras variables, int [2]).
  """

  def __init__(self, module, where):
    """Args:
      module: a tf.Module.
      where: how errors name it, e.g. "Trunk" or "Head of task 'sentiment'".
    Raises:
      ConfigError: an unbuilt Keras layer, an uninitialised Keras variable, a Keras
        regulariser, or a variable, module or Keras object held inside a plain Python object.
    """
    self.layers, self.trainable, self.state, self.seeds = [], [], [], []
    keras = _keras()
    found = module._flatten(predicate=lambda _: True, with_path=True)  # pylint: disable=protected-access
    seen = set()
    bare = []
    for path, value in found:
      hidden = _plain_holder_contents(value, keras)
      if hidden:
        raise ConfigError(
            f"{_describe(where, path)} is a plain {type(value).__name__} holding "
            f"{type(hidden[0]).__name__} objects, which neither tf.Module nor a checkpoint "
            f"tracks (they would never train): hold them as attributes of the tf.Module itself "
            f"or of a tf.Module inside it.")
      if keras is None:
        continue
      if isinstance(value, keras.Layer):
        if not value.built or any(not l.built for l in value._flatten_layers()):  # pylint: disable=protected-access
          name = ".".join(str(p) for p in path)
          raise ConfigError(
              f"{_describe(where, path)} is a Keras {type(value).__name__} that is not built "
              f"(its variables do not exist yet): call it once on an example batch, or "
              f"`{name}.build(input_shape)`, before making the MultiTaskModel.")
        _refuse_regularizers(value, where, path)
        self.layers.append(value)
        weights = {id(w) for w in value.weights}
        for v in value.variables:
          if id(v) not in seen:
            seen.add(id(v))
            if id(v) not in weights:
              self.seeds.append(v)
            elif v.trainable and value.trainable:
              self.trainable.append(v.value)
            else:
              self.state.append(v)
      elif isinstance(value, keras.Variable):
        bare.append((path, value))
    for path, v in bare:  # A Keras variable held directly (not through a layer).
      if id(v) in seen:
        continue
      seen.add(id(v))
      if v._value is None:  # pylint: disable=protected-access
        raise ConfigError(f"{_describe(where, path)} is a Keras variable that is not yet "
                          f"initialised; create it before making the MultiTaskModel.")
      if v.trainable:
        self.trainable.append(v.value)
      else:
        self.state.append(v)


def seed_initializers(seed):
  """Makes the Keras layers and initialisers built from now on without a seed of their own
  draw it from `seed`: Keras takes such a seed from Python's `random` when the object is made.
  (TensorFlow's global seed is left alone: it would change every seeded tf.data shuffle.)"""
  random.seed(int(seed))


def set_compute_dtype(layers, dtype):
  """Gives every Keras layer in `layers` (and every sublayer) the dtype policy of compute type
  `dtype`: float32 variables, computation in `dtype` (bf16 means bf16)."""
  policy = _POLICIES[tf.as_dtype(dtype)]
  for layer in layers:
    for sub in layer._flatten_layers(include_self=True, recursive=True):  # pylint: disable=protected-access
      sub.dtype_policy = policy


def seed_values(seeds, step_seed):
  """[(seed variable, its value this step)]: generator i reads (seed[0] + stride x (i + 1),
  seed[1]), a function of the step's seed [2] only."""
  step_seed = tf.cast(step_seed, tf.int64)
  return [(v, tf.stack([step_seed[0] + _SEED_STRIDE * (i + 1), step_seed[1]]))
          for i, v in enumerate(seeds)]


class StatelessForward:
  """Context for one forward pass of a model with Keras parts (`with ... as updates`).

  Inside, every Keras state assignment (BatchNormalization's moving statistics) is recorded,
  not applied, and every Keras seed generator reads its seed from `step_seed`; a loss a layer
  adds (add_loss) is refused on exit (ConfigError): no task's loss would include it. On exit,
  `updates` holds [(index into `state`, new value)] for each state variable the pass assigned.
  """

  def __init__(self, state, seeds, step_seed):
    self._state = state
    self._mapping = seed_values(seeds, step_seed)
    self._scope = None
    self.updates = []

  def __enter__(self):
    self._scope = _keras().StatelessScope(state_mapping=self._mapping, collect_losses=True)
    self._scope.__enter__()
    return self.updates

  def __exit__(self, *exc):
    self._scope.__exit__(*exc)
    if self._scope.losses and not any(exc):
      raise ConfigError(
          "A Keras layer added a loss in the forward pass (add_loss, or an activity "
          "regulariser), which no task's loss includes (it would do nothing): compute it in a "
          "task's loss instead.")
    for i, v in enumerate(self._state):
      value = self._scope.get_current_value(v)
      if value is not None:
        self.updates.append((i, tf.cast(value, v.value.dtype)))
    return False
