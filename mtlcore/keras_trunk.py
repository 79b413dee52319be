"""KerasModelTrunk: a whole Keras 3 model (Sequential or functional) as a trunk, in one call.

    trunk = KerasModelTrunk(keras.applications.MobileNetV3Small(
        input_shape=(32, 32, 3), weights=None, include_top=False),
        outputs={"pooled": "activation_17"}, inputs="image")

The trunk feeds the named features to the model and returns the outputs of the named layers
as its representations, for heads to read (a head may read an early layer and another a late
one). The layers and their variables are the given model's own (shared, not copied), so the
model owns, trains and checkpoints them like any Keras layer inside a trunk
(mtlcore.keras_parts).
"""

from collections.abc import Mapping

import keras

from mtlcore.errors import ConfigError
from mtlcore.model import SharedTrunk


class KerasModelTrunk(SharedTrunk):
  """A built keras.Model whose named layers' outputs are the representations.

  `__call__(features, training, seed)` -> {representation: that layer's output [B, ..., D]}.
  """

  def __init__(self, model, outputs, *, inputs="x", name=None):
    """Args:
      model: a built keras.Model (functional, or a Sequential built with an input shape).
      outputs: {representation name: layer name in `model`}, or a sequence of layer names
        (each then its own representation name), in the order heads should see them.
      inputs: the feature key fed to the model, or a sequence of keys in the order of the
        model's inputs.
    Raises:
      ConfigError: the model is not built, a layer name is unknown, or `inputs` does not
        match the number of the model's inputs.
    """
    super().__init__(name=name)
    if not isinstance(model, keras.Model):
      raise ConfigError(f"KerasModelTrunk needs a keras.Model, got {type(model).__name__}.")
    if not model.built:
      raise ConfigError(f"The Keras model '{model.name}' is not built: make it from "
                        f"keras.Input, or call its build(input_shape), first.")
    outputs = dict(outputs) if isinstance(outputs, Mapping) else {n: n for n in outputs}
    if not outputs:
      raise ConfigError("KerasModelTrunk needs at least one output layer.")
    names = [layer.name for layer in model.layers]
    unknown = [l for l in outputs.values() if l not in names]
    if unknown:
      raise ConfigError(f"The Keras model '{model.name}' has no layer(s) {unknown}; its layers "
                        f"are {names[:8]}{' ...' if len(names) > 8 else ''}.")
    self._inputs = (inputs,) if isinstance(inputs, str) else tuple(inputs)
    if len(self._inputs) != len(model.inputs):
      raise ConfigError(f"The Keras model '{model.name}' takes {len(model.inputs)} input(s); "
                        f"inputs names {list(self._inputs)}.")
    tensors = [model.get_layer(l).output for l in outputs.values()]
    self.net = keras.Model(model.inputs, tensors, name=f"{model.name}_outputs")
    self.output_sizes = {n: int(t.shape[-1]) for n, t in zip(outputs, tensors)}

  def __call__(self, features, *, training, seed):
    values = self.net([features[k] for k in self._inputs], training=training)
    return dict(zip(self.output_sizes, values if isinstance(values, (list, tuple)) else [values]))
