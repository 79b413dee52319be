"""Tests of mtlcore.model: variable ownership and its checks."""

import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.layers import Linear
from mtlcore.model import MultiTaskModel
from mtlcore.toy.network import RegressionHead, ReluTrunk, build_toy_model


def _refs(variables):
  return {v.ref() for v in variables}


def test_variables_for_a_task_are_its_head_plus_the_trunk():
  model = build_toy_model(seed=0)
  trunk = _refs(model.trunk.trainable_variables)
  y1, y2 = _refs(model.variables_for("y1")), _refs(model.variables_for("y2"))
  assert trunk <= y1 and trunk <= y2
  assert y1 - trunk == _refs(model.heads["y1"].trainable_variables)
  assert (y1 - trunk).isdisjoint(y2 - trunk)
  assert y1 | y2 == _refs(model.trainable_variables)


def test_unknown_task_names_are_named_in_the_error():
  model = build_toy_model(seed=0)
  with pytest.raises(ConfigError, match=r"Unknown task\(s\) \['pos'\]"):
    model.variables_for("pos")
  with pytest.raises(ConfigError, match="'nope'"):
    model({"x": tf.zeros([1, 10])}, tasks=["y1", "nope"])


def test_heads_sharing_a_variable_are_rejected_naming_both_tasks():
  trunk = ReluTrunk(10, 20, seed=0)
  a = RegressionHead(20, seed=1)
  b = RegressionHead(20, seed=2)
  b.layer = a.layer
  with pytest.raises(ConfigError, match="Heads of tasks 'a' and 'b' share variable"):
    MultiTaskModel(trunk, {"a": a, "b": b})


def test_a_head_sharing_a_trunk_variable_is_rejected():
  trunk = ReluTrunk(10, 20, seed=0)
  head = RegressionHead(20, seed=1)
  head.extra = trunk.layer
  with pytest.raises(ConfigError, match="Head of task 'a' shares variable .* with the trunk"):
    MultiTaskModel(trunk, {"a": head})


def test_a_head_reading_a_missing_representation_is_rejected():
  with pytest.raises(ConfigError, match="reads 'lower'"):
    MultiTaskModel(ReluTrunk(10, 20, seed=0), {"a": RegressionHead(20, seed=1, reads="lower")})


def test_a_variable_outside_trunk_and_heads_is_rejected():
  model_heads = {"a": RegressionHead(20, seed=1)}

  class Leaky(MultiTaskModel):

    def __init__(self):
      self.stray = Linear(2, 2, seed=0)  # Tracked before the check runs.
      super().__init__(ReluTrunk(10, 20, seed=0), model_heads)

  with pytest.raises(ConfigError, match="neither the trunk nor a head"):
    Leaky()


def test_training_calls_need_a_seed():
  with pytest.raises(ConfigError, match="seed"):
    build_toy_model(seed=0)({"x": tf.zeros([1, 10])}, training=True)
