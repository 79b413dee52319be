"""ReluTrunk: the smallest shared trunk, one ReLU layer over a feature vector.

The tutorial's network (two regression heads on 10 inputs) and the synthetic task set use it.
"""

import tensorflow as tf

from mtlcore.layers import Linear
from mtlcore.model import SharedTrunk


class ReluTrunk(SharedTrunk):
  """features[feature] [B, input_size] -> {"hidden": relu(x W + b)} [B, hidden_size]."""

  def __init__(self, input_size, hidden_size, *, seed, feature="x", name=None):
    super().__init__(name=name)
    self.feature = feature
    self.layer = Linear(input_size, hidden_size, seed=seed, name="shared")
    self.output_sizes = {"hidden": hidden_size}

  def __call__(self, features, *, training, seed):
    return {"hidden": tf.nn.relu(self.layer(features[self.feature]))}
