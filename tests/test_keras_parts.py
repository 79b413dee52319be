"""Keras 3 layers inside the model: owned, trained, their state moved only with an applied
update, refused in one line when the model cannot own them (mtlcore.keras_parts,
mtlcore.ownership)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from mtlcore import export as export_lib
from mtlcore import losses
from mtlcore.errors import ConfigError, NonFiniteError
from mtlcore.layers import Linear
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.tasks import Ratio, Task
from mtlcore.trainers import AlternatingTrainer, JointTrainer

TASKS = ("a", "b")


class KerasTrunk(SharedTrunk):
  """A keras.Sequential of Dense + BatchNormalization + Dropout, as a new user writes it."""

  def __init__(self, width=8):
    super().__init__()
    keras.utils.set_random_seed(0)
    self.net = keras.Sequential([keras.layers.Dense(width, activation="relu"),
                                 keras.layers.BatchNormalization(),
                                 keras.layers.Dropout(0.25)])
    self.net.build((None, 4))
    self.output_sizes = {"hidden": width}

  def __call__(self, features, *, training, seed):
    return {"hidden": self.net(features["x"], training=training)}


class KerasHead(TaskHead):
  """BatchNormalization + Dense(1): a head with state of its own."""

  def __init__(self, width=8):
    super().__init__(reads="hidden")
    self.norm = keras.layers.BatchNormalization()
    self.out = keras.layers.Dense(1)
    self.norm.build((None, width))
    self.out.build((None, width))

  def __call__(self, representation, features, *, training, seed):
    return self.out(self.norm(representation, training=training))


def _model():
  return MultiTaskModel(KerasTrunk(), {t: KerasHead() for t in TASKS})


def _squared(labels, predictions, features):
  del features
  return losses.squared_error(labels, predictions)


def _tasks():
  return [Task(t, loss=_squared, loss_count=lambda l, f: tf.cast(tf.size(l), tf.float32))
          for t in TASKS]


def _data(n=64, *, missing_b=False, nan=False):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  labels = {"a": x[:, :1] * 2.0, "b": x[:, 1:2] - x[:, 2:3]}
  if nan:
    labels["a"] = np.full_like(labels["a"], np.nan)
  if missing_b:  # Task b's labels absent (NaN): its loss counts nothing.
    labels["b"] = np.full_like(labels["b"], np.nan)
  return tf.data.Dataset.from_tensor_slices(({"x": x}, labels)).repeat().batch(16)


def _masked_squared(labels, predictions, features):
  """Squared error over the labelled (non-NaN) targets."""
  del features
  known = ~tf.math.is_nan(labels)
  error = tf.where(known, labels - predictions, 0.0)
  return Ratio(tf.reduce_sum(tf.square(error)), tf.reduce_sum(tf.cast(known, tf.float32)))


def _values(variables):
  return [np.array(v.numpy()) for v in variables]


def _alternating(model, probabilities=(1.0, 0.0)):
  return AlternatingTrainer(
      model=model, tasks=_tasks(), optimizers={t: Adam(0.01) for t in TASKS},
      datasets={t: _data() for t in TASKS}, sampler=TaskSampler(list(TASKS), list(probabilities), seed=1),
      seed=1)


def test_every_keras_variable_is_owned_and_moves_in_joint_training():
  model = _model()
  owned = model.variables_to_train()
  assert model.trunk.trainable_variables == ()  # What tf.Module alone sees of Keras layers.
  # Dense kernel+bias, BN gamma+beta in the trunk; BN gamma+beta, Dense kernel+bias per head.
  assert len(owned) == 4 + 2 * 4
  assert len(model.owners.state) == 2 + 2 * 2  # Moving mean and variance of each BN.
  assert [model.owners.owner(v) for v in model.variables_for("a")] == [None] * 4 + ["a"] * 4
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01), dataset=_data(),
                         seed=1)
  before = _values(owned)
  state_before = _values([v for v, _ in model.owners.state])
  trainer.train(3)
  for b, v in zip(before, owned):
    assert not np.array_equal(b, v.numpy()), v.name
  for b, (v, _) in zip(state_before, model.owners.state):
    assert not np.array_equal(b, v.numpy()), v.path


def test_an_alternating_step_of_a_leaves_b_keras_head_state_and_slots_bitwise():
  trainer = _alternating(_model())
  model, opt_b = trainer.model, trainer.optimizers["b"]
  b_head = model.heads["b"]
  kept = [*b_head.norm.variables, *b_head.out.variables]
  before = _values(kept)
  slots = _values([*opt_b.m, *opt_b.v, opt_b.iterations])
  moved = model.variables_for("a")
  moved_before = _values(moved)
  trainer.train(2)
  for b, v in zip(before, kept):
    np.testing.assert_array_equal(b, v.numpy())
  for b, v in zip(slots, [*opt_b.m, *opt_b.v, opt_b.iterations]):
    np.testing.assert_array_equal(b, v.numpy())
  for b, v in zip(moved_before, moved):
    assert not np.array_equal(b, v.numpy()), v.name
  assert not np.array_equal(before[0], model.heads["a"].norm.moving_mean.numpy())


def test_joint_step_leaves_an_unlabelled_task_head_and_its_statistics_bitwise():
  model = _model()
  tasks = [Task(t, loss=_masked_squared) for t in TASKS]
  trainer = JointTrainer(model=model, tasks=tasks, optimizer=Adam(0.01),
                         dataset=_data(missing_b=True), seed=1)
  b_head = model.heads["b"]
  kept = [*b_head.norm.variables, *b_head.out.variables]
  before = _values(kept)
  trunk_mean = model.trunk.net.layers[1].moving_mean.numpy().copy()
  trainer.train(2)
  for b, v in zip(before, kept):
    np.testing.assert_array_equal(b, v.numpy())
  assert not np.array_equal(trunk_mean, model.trunk.net.layers[1].moving_mean.numpy())


def test_a_skipped_nonfinite_step_moves_no_keras_statistics():
  model = _model()
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01),
                         dataset=_data(nan=True), seed=1, max_nonfinite_steps=5)
  state = [v for v, _ in model.owners.state]
  before = _values(state + list(model.variables_to_train()))
  logs = trainer.train(2)
  assert logs.nonfinite_steps == 2
  for b, v in zip(before, state + list(model.variables_to_train())):
    np.testing.assert_array_equal(b, v.numpy())


def test_keras_dropout_masks_differ_per_step_and_replay_for_the_same_seed():
  model = _model()
  x = {"x": tf.constant(np.random.default_rng(3).normal(size=(16, 4)), tf.float32)}
  forward = tf.function(lambda s: model.forward(x, training=True, seed=s)[0]["a"])
  dropped = [forward(tf.constant([7, step], tf.int64)).numpy() for step in (0, 1, 0)]
  assert not np.array_equal(dropped[0], dropped[1])
  np.testing.assert_array_equal(dropped[0], dropped[2])


def test_bf16_precision_computes_keras_layers_in_bf16():
  model = _model()
  model.set_compute_dtype(tf.bfloat16)
  assert model.trunk.net.layers[0].compute_dtype == "bfloat16"
  hidden = model.trunk({"x": tf.ones([2, 4], tf.bfloat16)}, training=False, seed=None)
  assert hidden["hidden"].dtype == tf.bfloat16
  assert all(v.dtype == tf.float32 for v in model.variables_to_train())
  outputs = model({"x": tf.ones([2, 4])})
  assert outputs["a"].dtype == tf.float32


def test_checkpoint_holds_each_keras_variable_once(tmp_path):
  trainer = _alternating(_model())
  path = tf.train.Checkpoint(trainer=trainer).write(str(tmp_path / "ckpt"))
  names = [n for n, _ in tf.train.list_variables(path) if "OPTIMIZER" not in n]
  kernels = [n for n in names if "kernel" in n and "/m/" not in n]
  assert len(kernels) == 3, names  # The trunk's Dense and each head's Dense, once each.


def test_export_serves_a_keras_model(tmp_path):
  model = _model()
  spec = {"x": tf.TensorSpec([None, 4], tf.float32, name="x")}
  export_lib.export_model(str(tmp_path / "export"), model, list(TASKS), spec,
                          atomically=False)
  served = tf.saved_model.load(str(tmp_path / "export"))
  x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
  got = served.signatures["serving_default"](x=tf.constant(x))
  want = model({"x": tf.constant(x)})
  for t in TASKS:
    np.testing.assert_allclose(got[t].numpy(), want[t].numpy(), rtol=1e-6)


class _Unbuilt(SharedTrunk):
  def __init__(self):
    super().__init__()
    self.encoder = keras.layers.Dense(3)
    self.output_sizes = {"hidden": 3}


class _Hidden:
  def __init__(self):
    self.layer = keras.layers.Dense(3)
    self.layer.build((None, 4))


class _HiddenTrunk(SharedTrunk):
  def __init__(self):
    super().__init__()
    self.helper = _Hidden()
    self.output_sizes = {"hidden": 3}


class _ClosureTrunk(SharedTrunk):
  """Reads a Keras layer through a closure the model cannot see into."""

  def __init__(self):
    super().__init__()
    layer = keras.layers.Dense(3)
    layer.build((None, 4))
    self.apply = lambda x: layer(x)  # pylint: disable=unnecessary-lambda
    self.own = Linear(4, 3, seed=0)
    self.output_sizes = {"hidden": 3}

  def __call__(self, features, *, training, seed):
    return {"hidden": self.apply(features["x"]) + self.own(features["x"])}


def test_an_unbuilt_keras_layer_is_refused_in_one_line_naming_it():
  with pytest.raises(ConfigError) as error:
    MultiTaskModel(_Unbuilt(), {"a": KerasHead(3)})
  message = str(error.value)
  assert "'encoder'" in message and "encoder.build(input_shape)" in message
  assert "\n" not in message


def test_a_keras_layer_inside_a_plain_object_is_refused_in_one_line():
  with pytest.raises(ConfigError) as error:
    MultiTaskModel(_HiddenTrunk(), {"a": KerasHead(3)})
  assert "'helper'" in str(error.value) and "\n" not in str(error.value)


def test_a_variable_read_through_a_closure_is_refused_when_the_step_is_traced():
  model = MultiTaskModel(_ClosureTrunk(), {t: KerasHead(3) for t in TASKS})
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01), dataset=_data(),
                         seed=1)
  with pytest.raises(ConfigError, match="no part of the model owns"):
    trainer.train(1)


def test_one_keras_layer_in_two_heads_is_refused():
  shared = KerasHead()
  with pytest.raises(ConfigError, match="share variable"):
    MultiTaskModel(KerasTrunk(), {"a": shared, "b": shared})


def test_a_task_part_of_the_trunk_is_trained_only_by_its_task():
  class Gated(KerasTrunk):
    def __init__(self):
      super().__init__()
      self.gate_a = keras.layers.Dense(8)
      self.gate_a.build((None, 8))

    def __call__(self, features, *, training, seed):
      hidden = self.net(features["x"], training=training)
      return {"hidden": hidden, "gated": self.gate_a(hidden)}

    def task_parts(self):
      return {"a": self.gate_a}

  trunk = Gated()
  trunk.output_sizes = {"hidden": 8, "gated": 8}
  heads = {"a": KerasHead(), "b": KerasHead()}
  heads["a"].reads = "gated"
  model = MultiTaskModel(trunk, heads)
  gate = [v.value for v in trunk.gate_a.trainable_variables]
  assert all(model.owners.owner(v) == "a" for v in gate)
  assert not {v.ref() for v in gate} & {v.ref() for v in model.variables_for("b")}
  trainer = _alternating(model, probabilities=(0.0, 1.0))  # Always task b.
  before = _values(gate)
  trainer.train(2)
  for b, v in zip(before, gate):
    np.testing.assert_array_equal(b, v.numpy())
  with pytest.raises(ConfigError, match="trunk parts of tasks"):
    MultiTaskModel(trunk, heads, task_parts={"a": trunk.gate_a, "b": trunk.gate_a})


def test_nonfinite_error_still_names_the_task_with_keras_parts():
  trainer = JointTrainer(model=_model(), tasks=_tasks(), optimizer=Adam(0.01),
                         dataset=_data(nan=True), seed=1)
  with pytest.raises(NonFiniteError, match="task 'a'"):
    trainer.train(1)


def _functional():
  inputs = keras.Input((4,))
  low = keras.layers.Dense(6, activation="relu", name="low")(inputs)
  high = keras.layers.Dense(5, activation="relu", name="high")(low)
  return keras.Model(inputs, keras.layers.Dense(3, name="top")(high), name="net")


def test_a_whole_keras_model_is_a_trunk_in_one_call_and_its_named_layers_train():
  from mtlcore.keras_trunk import KerasModelTrunk  # pylint: disable=g-import-not-at-top
  trunk = KerasModelTrunk(_functional(), {"low": "low", "high": "high"}, inputs="x")
  assert trunk.output_sizes == {"low": 6, "high": 5}
  heads = {"a": KerasHead(6), "b": KerasHead(5)}
  heads["a"].reads = "low"
  heads["b"].reads = "high"
  model = MultiTaskModel(trunk, heads)
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01), dataset=_data(),
                         seed=1)
  owned = model.variables_to_train()
  # The trunk is the path from the inputs to the named layers: "top" is not part of it.
  assert len(owned) == 4 + 2 * 4 and not [v for v in owned if "top" in v.name]
  before = _values(owned)
  trainer.train(2)
  for b, v in zip(before, owned):
    assert not np.array_equal(b, v.numpy()), v.name


@pytest.mark.parametrize("build, message", [
    (lambda m: (m, {"z": "nope"}, "x"), "has no layer(s) ['nope']"),
    (lambda m: (m, ["low"], ("x", "y")), "takes 1 input(s)"),
    (lambda m: (keras.Sequential([keras.layers.Dense(2)]), ["dense"], "x"), "is not built"),
    (lambda m: (keras.layers.Dense(2), ["dense"], "x"), "needs a keras.Model"),
])
def test_a_keras_model_trunk_refuses_bad_arguments_in_one_line(build, message):
  from mtlcore.keras_trunk import KerasModelTrunk  # pylint: disable=g-import-not-at-top
  model, outputs, inputs = build(_functional())
  with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")
                     .replace("[", r"\[").replace("]", r"\]")):
    KerasModelTrunk(model, outputs, inputs=inputs)


def test_a_keras_applications_network_trains_as_a_trunk():
  from mtlcore.keras_trunk import KerasModelTrunk  # pylint: disable=g-import-not-at-top
  net = keras.applications.MobileNetV3Small(input_shape=(32, 32, 3), weights=None,
                                             include_top=False, include_preprocessing=False,
                                             minimalistic=True)
  trunk = KerasModelTrunk(net, {"features": net.layers[-1].name}, inputs="image")

  class Pooled(TaskHead):
    def __init__(self):
      super().__init__(reads="features")
      self.out = keras.layers.Dense(1)
      self.out.build((None, 576))

    def __call__(self, representation, features, *, training, seed):
      return self.out(tf.reduce_mean(representation, axis=[1, 2]))

  model = MultiTaskModel(trunk, {t: Pooled() for t in TASKS})
  assert len(model.owners.state) == len(net.non_trainable_weights)
  rng = np.random.default_rng(0)
  x = rng.normal(size=(8, 32, 32, 3)).astype(np.float32)
  data = tf.data.Dataset.from_tensors(({"image": x}, {"a": x[:, 0, 0, :1], "b": x[:, 1, 1, :1]}))
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01),
                         dataset=data.repeat(), seed=1)
  first = model.variables_to_train()[0]
  before = first.numpy().copy()
  trainer.train(1)
  assert not np.array_equal(before, first.numpy())


class _RegularizedHead(TaskHead):
  def __init__(self, **kwargs):
    super().__init__(reads="hidden")
    self.out = keras.layers.Dense(1, **kwargs)
    self.out.build((None, 8))

  def __call__(self, representation, features, *, training, seed):
    return self.out(representation)


def test_a_keras_regulariser_is_refused_in_one_line_as_it_would_do_nothing():
  with pytest.raises(ConfigError, match="regulariser on .*kernel") as error:
    MultiTaskModel(KerasTrunk(), {"a": _RegularizedHead(kernel_regularizer="l2"),
                                  "b": KerasHead()})
  assert "'out'" in str(error.value) and "\n" not in str(error.value)
  with pytest.raises(ConfigError, match="activity regulariser"):
    MultiTaskModel(KerasTrunk(), {"a": _RegularizedHead(activity_regularizer="l2"),
                                  "b": KerasHead()})


def test_a_keras_add_loss_in_the_forward_pass_is_refused_when_the_step_is_traced():
  class Adding(keras.layers.Layer):
    def call(self, x):
      self.add_loss(tf.reduce_sum(x))
      return x

  class Head(KerasHead):
    def __init__(self):
      super().__init__()
      self.extra = Adding()
      self.extra.build((None, 8))

    def __call__(self, representation, features, *, training, seed):
      return super().__call__(self.extra(representation), features, training=training,
                              seed=seed)

  model = MultiTaskModel(KerasTrunk(), {"a": Head(), "b": KerasHead()})
  trainer = JointTrainer(model=model, tasks=_tasks(), optimizer=Adam(0.01), dataset=_data(),
                         seed=1)
  with pytest.raises(ConfigError, match="added a loss in the forward pass"):
    trainer.train(1)
