"""The tutorial's toy network: a shared ReLU layer and one linear head per regression task,
from mtlcore's layers or from Keras 3 layers."""

import tensorflow as tf

from mtlcore import losses
from mtlcore.layers import Linear
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.relu_trunk import ReluTrunk
from mtlcore.tasks import Task


class RegressionHead(TaskHead):
  """representation [B, D] -> predictions [B, output_size], linear."""

  def __init__(self, input_size, output_size=1, *, seed, reads="hidden", name=None):
    super().__init__(reads=reads, name=name)
    self.layer = Linear(input_size, output_size, seed=seed, name="linear")

  def __call__(self, representation, features, *, training, seed):
    return self.layer(representation)


def build_toy_model(*, input_size=10, hidden_size=20, task_names=("y1", "y2"), seed=0):
  """The original tutorial's network: 10 inputs, shared ReLU layer of 20, heads of 1."""
  trunk = ReluTrunk(input_size, hidden_size, seed=seed, name="trunk")
  heads = {name: RegressionHead(hidden_size, 1, seed=seed + 1 + i, name=f"{name}_head")
           for i, name in enumerate(task_names)}
  return MultiTaskModel(trunk, heads, name="toy_model")


class KerasReluTrunk(SharedTrunk):
  """The same trunk from Keras 3 layers: a keras.Sequential of one Dense(hidden_size, relu),
  as a new user writes it (no seed of its own: the run's seed reaches it through
  mtlcore.keras_parts.seed_initializers)."""

  def __init__(self, input_size, hidden_size, name=None):
    super().__init__(name=name)
    import keras  # pylint: disable=g-import-not-at-top
    self.net = keras.Sequential([keras.layers.Dense(hidden_size, activation="relu")],
                                name="shared")
    self.net.build((None, input_size))
    self.output_sizes = {"hidden": hidden_size}

  def __call__(self, features, *, training, seed):
    return {"hidden": self.net(features["x"], training=training)}


class KerasRegressionHead(TaskHead):
  """representation [B, D] -> predictions [B, output_size], a keras Dense layer."""

  def __init__(self, input_size, output_size=1, *, reads="hidden", name=None):
    super().__init__(reads=reads, name=name)
    import keras  # pylint: disable=g-import-not-at-top
    self.layer = keras.layers.Dense(output_size, name="linear")
    self.layer.build((None, input_size))

  def __call__(self, representation, features, *, training, seed):
    return self.layer(representation)


def build_keras_toy_model(*, input_size=10, hidden_size=20, task_names=("y1", "y2")):
  """The tutorial's network from Keras 3 layers."""
  trunk = KerasReluTrunk(input_size, hidden_size, name="trunk")
  heads = {name: KerasRegressionHead(hidden_size, 1, name=f"{name}_head") for name in task_names}
  return MultiTaskModel(trunk, heads, name="toy_model")


def _squared_error(labels, predictions, features):
  del features
  return losses.squared_error(labels, predictions)


def _elements(labels, features):
  del features
  return tf.cast(tf.size(labels), tf.float32)


def toy_tasks(task_names=("y1", "y2")):
  """One squared-error Task per regression target (normalised by elements: the MSE)."""
  return [Task(name, loss=_squared_error, loss_count=_elements) for name in task_names]
