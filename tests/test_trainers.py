"""Tests of the alternating and joint trainers on the toy model."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.toy.data import toy_dataset
from mtlcore.errors import ConfigError, NonFiniteError
from mtlcore.toy.network import build_toy_model, toy_tasks
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.trainers import AlternatingTrainer, JointTrainer
from mtlcore.tasks import Ratio, Task


def _alternating(sampler_probabilities=None, jit_compile=True, seed=0, **kwargs):
  model = build_toy_model(seed=seed)
  tasks = toy_tasks()
  dataset = toy_dataset(512, batch_size=16, seed=seed)
  return AlternatingTrainer(
      model=model, tasks=tasks, optimizers={t.name: Adam(0.01) for t in tasks},
      datasets={t.name: dataset for t in tasks},
      sampler=TaskSampler(["y1", "y2"], sampler_probabilities, seed=seed),
      jit_compile=jit_compile, seed=seed, **kwargs)


def _joint(jit_compile=True, seed=0, **kwargs):
  return JointTrainer(model=build_toy_model(seed=seed), tasks=toy_tasks(),
                      optimizer=Adam(0.01), dataset=toy_dataset(512, batch_size=16, seed=seed),
                      jit_compile=jit_compile, seed=seed, **kwargs)


def _values(variables):
  return [v.numpy().copy() for v in variables]


def test_alternating_step_leaves_other_head_and_optimizer_untouched():
  trainer = _alternating(sampler_probabilities=[1.0, 0.0])  # Always task y1.
  model, opt_y2 = trainer.model, trainer.optimizers["y2"]
  head_y2 = _values(model.heads["y2"].trainable_variables)
  state_y2 = _values([*opt_y2.m, *opt_y2.v, opt_y2.iterations, opt_y2.learning_rate])
  trunk = _values(model.trunk.trainable_variables)
  head_y1 = _values(model.heads["y1"].trainable_variables)

  logs = trainer.train(1)

  assert logs.tasks["y1"].steps == 1 and logs.tasks["y2"].steps == 0
  for before, v in zip(head_y2, model.heads["y2"].trainable_variables):
    np.testing.assert_array_equal(before, v.numpy())
  for before, v in zip(state_y2, [*opt_y2.m, *opt_y2.v, opt_y2.iterations,
                                  opt_y2.learning_rate]):
    np.testing.assert_array_equal(before, v.numpy())
  for before, v in zip(trunk + head_y1,
                       model.trunk.trainable_variables + model.heads["y1"].trainable_variables):
    assert not np.array_equal(before, v.numpy()), v.name
  assert int(trainer.optimizers["y1"].iterations.numpy()) == 1
  assert int(trainer.task_steps["y1"].numpy()) == 1
  assert int(trainer.task_steps["y2"].numpy()) == 0
  assert int(trainer.global_step.numpy()) == 1


def test_joint_loss_and_trunk_gradient_are_sums_of_the_task_terms():
  trainer = _joint()
  features, labels = next(iter(toy_dataset(64, batch_size=16, seed=1)))
  seed = tf.constant([0, 0], tf.int64)
  trunk_vars = trainer.model.trunk.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    total, losses, _ = trainer.weighted_losses(features, labels, training=True, seed=seed)
  joint_grads = tape.gradient(total, trunk_vars)
  per_task = [tape.gradient(losses[n], trunk_vars) for n in ("y1", "y2")]
  np.testing.assert_allclose(total, losses["y1"] + losses["y2"], rtol=1e-6)
  for g, g1, g2 in zip(joint_grads, *per_task):
    np.testing.assert_allclose(g, g1 + g2, rtol=1e-5, atol=1e-7)


def test_joint_loss_weights_scale_each_task():
  trainer = _joint(loss_weights={"y1": 0.25})
  features, labels = next(iter(toy_dataset(64, batch_size=16, seed=1)))
  total, losses, _ = trainer.weighted_losses(features, labels, training=False, seed=None)
  np.testing.assert_allclose(total, 0.25 * losses["y1"] + losses["y2"], rtol=1e-6)


@pytest.mark.parametrize("make", [_alternating, _joint])
def test_xla_and_plain_steps_give_the_same_variables(make):
  compiled, plain = make(jit_compile=True), make(jit_compile=False)
  compiled.train(3)
  plain.train(3)
  for a, b in zip(compiled.model.trainable_variables, plain.model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


@pytest.mark.parametrize("make", [_alternating, _joint])
def test_each_compiled_step_is_traced_once_over_20_steps(make):
  trainer = make()
  for _ in range(20):
    trainer.train(1)
  counts = {k: f.experimental_get_tracing_count() for k, f in trainer.step_functions().items()}
  assert counts and set(counts.values()) == {1}, counts
  assert trainer._loop.experimental_get_tracing_count() == 1  # pylint: disable=protected-access


def held_out_losses(trainer):
  """{task: loss} of the trainer's model on 1,024 held-out toy examples."""
  features, labels = next(iter(toy_dataset(1024, batch_size=1024, seed=7)))
  predictions = trainer.model(features)
  return {t.name: float(t.loss(labels[t.name], predictions[t.name], features).value())
          for t in trainer.tasks.values()}


@pytest.mark.parametrize("make", [_alternating, _joint])
def test_toy_problem_loss_falls_tenfold_for_each_task(make):
  trainer = make()
  first = held_out_losses(trainer)
  trainer.train(3000)
  last = held_out_losses(trainer)
  for task in ("y1", "y2"):
    assert last[task] * 10 <= first[task], (task, first, last)


def test_same_seed_same_result_and_different_seed_different_result():
  a, b, c = _alternating(seed=0), _alternating(seed=0), _alternating(seed=1)
  for t in (a, b, c):
    t.train(30)
  for x, y in zip(a.model.trainable_variables, b.model.trainable_variables):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
  assert not np.array_equal(a.model.trunk.layer.w.numpy(), c.model.trunk.layer.w.numpy())


def test_missing_optimizer_or_dataset_is_named():
  model, tasks = build_toy_model(seed=0), toy_tasks()
  dataset = toy_dataset(64, batch_size=16, seed=0)
  with pytest.raises(ConfigError, match=r"an optimizer .* missing \['y2'\]"):
    AlternatingTrainer(model=model, tasks=tasks, optimizers={"y1": Adam()},
                       datasets={"y1": dataset, "y2": dataset},
                       sampler=TaskSampler(["y1", "y2"], seed=0))
  with pytest.raises(ConfigError, match=r"a dataset .* missing \['y1'\]"):
    AlternatingTrainer(model=model, tasks=tasks, optimizers={"y1": Adam(), "y2": Adam()},
                       datasets={"y2": dataset}, sampler=TaskSampler(["y1", "y2"], seed=0))


def test_unknown_task_and_unknown_loss_weight_are_named():
  with pytest.raises(ConfigError, match="'pos'"):
    JointTrainer(model=build_toy_model(seed=0), tasks=toy_tasks(["y1", "pos"]),
                 optimizer=Adam(), dataset=toy_dataset(64, batch_size=16, seed=0))
  with pytest.raises(ConfigError, match=r"unknown task\(s\) \['y3'\]"):
    _joint(loss_weights={"y3": 1.0})


def _nan_dataset():
  features, labels = next(iter(toy_dataset(16, batch_size=16, seed=0)))
  labels = dict(labels, y2=labels["y2"] * np.nan)
  return tf.data.Dataset.from_tensors((features, labels)).repeat()


def test_a_nan_loss_stops_training_naming_the_task_and_leaves_variables_unchanged():
  trainer = JointTrainer(model=build_toy_model(seed=0), tasks=toy_tasks(), optimizer=Adam(),
                         dataset=_nan_dataset())
  before = _values(trainer.model.trainable_variables)
  with pytest.raises(NonFiniteError, match="task 'y2' at global step 0"):
    trainer.train(2)
  for b, v in zip(before, trainer.model.trainable_variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_nonfinite_steps_can_be_skipped_up_to_a_limit():
  trainer = JointTrainer(model=build_toy_model(seed=0), tasks=toy_tasks(), optimizer=Adam(),
                         dataset=_nan_dataset(), max_nonfinite_steps=3)
  assert trainer.train(3).nonfinite_steps == 3
  with pytest.raises(NonFiniteError, match="4 such steps in all, 3 allowed"):
    trainer.train(1)


def test_close_releases_the_iterators_and_training_again_continues_the_stream():
  import gc  # pylint: disable=g-import-not-at-top
  import weakref  # pylint: disable=g-import-not-at-top
  trainer = _joint()
  trainer.train(3)
  iterator = weakref.ref(trainer._inputs.iterators["joint"])  # pylint: disable=protected-access
  trainer.close()
  gc.collect()
  assert iterator() is None
  reference = _joint()
  reference.train(5)
  trainer.train(2)  # Rebuilt at batch 3: the same five batches as one uninterrupted run.
  for a, b in zip(trainer.model.variables_to_train(), reference.model.variables_to_train()):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_python_control_flow_on_a_tensor_in_a_loss_is_one_clear_error():
  """The steps trace without autograph: a loss that branches in Python on a tensor gets a
  ConfigError that says what to write instead, not TensorFlow's autograph advice."""
  def branching_loss(labels, predictions, features):
    del features
    error = tf.reduce_mean(tf.square(predictions - labels))
    if error > 1.0:  # A tensor as a Python bool.
      return Ratio(error * 0.5, tf.constant(1.0))
    return Ratio(error, tf.constant(1.0))

  tasks = [Task(t.name, loss=branching_loss) for t in toy_tasks()]
  trainer = JointTrainer(model=build_toy_model(), tasks=tasks, optimizer=Adam(0.01),
                         dataset=toy_dataset(64, batch_size=16, seed=0))
  with pytest.raises(ConfigError, match="The training step: Using a symbolic `tf.Tensor` as a "
                                        "Python `bool` is not allowed; mtlcore traces without "
                                        "autograph, .* tf.cond, tf.where or tf.while_loop"):
    trainer.train(2)
