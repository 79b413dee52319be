"""--task_gradients=representation: a gradient method's task gradients taken on the shared
representation the heads read (LibMTL's rep_grad; MGDA-UB for mgda), combined there, and sent
through the trunk in one backward pass (trainers/joint.py, `_combined_on_representation`)."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import weighting
from mtlcore.choices import GRADIENT_METHODS, PER_PARAMETER_STATE, SAMPLED_GRADIENTS, WEIGHTINGS
from mtlcore.errors import ConfigError
from mtlcore.layers import Linear
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.optimizers import Adam
from mtlcore.tasks import Task
from mtlcore.trainers import JointTrainer
from mtlcore.trainers.config import RunConfig
from tests.binaries import TRAIN, error_line, run_in_process
from tests.recording_adam import RecordingAdam
from tests.test_gradient_methods import _GatedTrunk, _Head
from tests.test_keras_parts import _masked_squared

TASKS = ("a", "b", "c")


class _Trunk(SharedTrunk):
  """Two shared layers; "hidden" the top one's ReLU states, "low" the first's."""

  def __init__(self):
    super().__init__()
    self.first, self.second = Linear(4, 8, seed=0), Linear(8, 6, seed=1)
    self.output_sizes = {"low": 8, "hidden": 6}

  def __call__(self, features, *, training, seed):
    low = tf.nn.relu(self.first(features["x"]))
    return {"low": low, "hidden": tf.nn.relu(self.second(low))}


class _OwnedTrunk(_Trunk):
  """_Trunk whose second layer belongs to task a."""

  def task_parts(self):
    return {"a": self.second}


class _ReadingHead(TaskHead):
  def __init__(self, reads, size, seed):
    super().__init__(reads=reads)
    self.out = Linear(size, 1, seed=seed)

  def __call__(self, representation, features, *, training, seed):
    return self.out(representation)


def _batch():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 4)).astype(np.float32)
  labels = {"a": x[:, :1] * 2.0, "b": -x[:, :1] + 0.5 * x[:, 1:2],
            "c": np.full((16, 1), np.nan, np.float32)}  # c: no label in the batch.
  return {"x": x}, labels


def _model(reads=("hidden",) * 3, trunk=_Trunk):
  sizes = {"hidden": 6, "low": 8}
  return MultiTaskModel(trunk(), {t: _ReadingHead(r, sizes[r], seed=i + 2)
                                  for i, (t, r) in enumerate(zip(TASKS, reads))})


def _trainer(model, method, task_gradients="representation", optimizer=None):
  features, labels = _batch()
  data = tf.data.Dataset.from_tensors((features, labels)).repeat()
  return JointTrainer(model=model, tasks=[Task(t, loss=_masked_squared) for t in TASKS],
                      optimizer=optimizer or Adam(0.01), dataset=data,
                      weighting=weighting.make_weighting(method, list(TASKS)),
                      task_gradients=task_gradients)


@pytest.mark.parametrize("method", ["mgda", "pcgrad", "upgrad", "imtl"])
def test_the_trunk_gets_the_combined_representation_row_sent_back_through_it(method):
  """One compiled step against the definition in eager TensorFlow: rows [K, B x H] of the
  task losses' gradients on "hidden", the method's (direction, weights) of them, the trunk's
  gradient the vector-Jacobian product of the direction, which for a method of the form
  G^T w (mgda, upgrad) is sum_k w_k grad_theta L_k; each head its own loss's gradient. Task c
  has no label: its row is zero, its weight 0, its head and slots untouched. imtl's rows
  and heads' gradients are those of its rescaled losses e^s L - s (its scales s set away
  from their start)."""
  model = _model()
  optimizer = RecordingAdam(0.01)
  trainer = _trainer(model, method, optimizer=optimizer)
  scales = tf.constant([0.5, -0.3, 0.2])
  if method == "imtl":
    trainer.weighting.log_scales.assign(scales)
  head_c = [v.numpy().copy() for v in model.heads["c"].trainable_variables]
  features, labels = _batch()  # The reference, from the variables before the step.
  trunk = model.trunk.trainable_variables
  with tf.GradientTape(persistent=True) as tape:
    representations = model.trunk(features, training=True, seed=tf.zeros([2], tf.int64))
    hidden = representations["hidden"]
    losses = [_masked_squared(labels[t], model.heads[t](hidden, features, training=True,
                                                         seed=None), features).value()
              for t in TASKS]
    if method == "imtl":
      losses = [tf.exp(scales[k]) * l - scales[k] for k, l in enumerate(losses)]
  rows = tf.stack([tf.reshape(g if g is not None else tf.zeros_like(hidden), [-1])
                   for g in (tape.gradient(l, hidden) for l in losses)])
  labelled = tf.constant([True, True, False])
  direction, weights = trainer.weighting.combine_gradients(rows, trainer.step_seed(0), labelled)
  want = tape.gradient(hidden, trunk, output_gradients=tf.reshape(direction, tf.shape(hidden)))
  per_task = [tape.gradient(l, trunk) for l in losses[:2]]
  heads = {t: tape.gradient(losses[TASKS.index(t)], model.heads[t].trainable_variables)
           for t in ("a", "b")}
  logs = trainer.train(1)
  for g, v in zip(want, trunk):
    np.testing.assert_allclose(optimizer.first_of(v), g, rtol=1e-4, atol=1e-6,
                               err_msg=v.name)
  if method in ("mgda", "upgrad"):  # G^T w: the same as weighing the parameter gradients.
    for i, v in enumerate(trunk):
      weighted = sum(float(weights[k]) * per_task[k][i] for k in range(2))
      np.testing.assert_allclose(optimizer.first_of(v), weighted, rtol=1e-4, atol=1e-6)
  for t in ("a", "b"):
    for g, v in zip(heads[t], model.heads[t].trainable_variables):
      np.testing.assert_allclose(optimizer.first_of(v), g, rtol=1e-5, atol=1e-7)
  if method != "pcgrad":  # PCGrad reports weight 1 for every task (a zero row is left alone).
    assert float(weights[2]) == 0.0 and logs.tasks["c"].metrics["weight"] == 0.0
  for before, v in zip(head_c, model.heads["c"].trainable_variables):
    np.testing.assert_array_equal(before, v.numpy())
    slot = optimizer._index[v.ref()]  # pylint: disable=protected-access
    assert not optimizer.m[slot].numpy().any()


class _TiedHead(_ReadingHead):
  """A head that also reads the trunk's shared first layer itself (a tied weight): part of
  its task's gradient on that layer comes through no representation."""

  def __init__(self, reads, size, seed, trunk):
    super().__init__(reads, size, seed)
    self._tied = lambda: trunk.first.w  # Not an attribute: the trunk owns it.

  def __call__(self, representation, features, *, training, seed):
    return self.out(representation) + 0.1 * tf.reduce_sum(self._tied())


@pytest.mark.parametrize("trunk, tied", [(_Trunk, False), (_OwnedTrunk, False), (_Trunk, True)])
def test_parameter_rows_are_each_tasks_gradient_and_a_head_reading_the_trunk_is_refused_here(
    trunk, tied):
  """On the parameters a gradient method's rows are each task's whole gradient: one compiled
  step against K eager backward passes, heads reading different layers (a: "low", b and c:
  "hidden"), with a task-owned trunk part (_OwnedTrunk: a's second layer) and with a head
  that reads a shared variable itself (b, tied). On the representation that tied head's
  part of the gradient would be lost: refused in one line naming the task."""
  model = _model(reads=("low", "hidden", "hidden"), trunk=trunk)
  if tied:
    model = MultiTaskModel(model.trunk, {
        "a": model.heads["a"], "b": _TiedHead("hidden", 6, 3, model.trunk),
        "c": model.heads["c"]})
  optimizer = RecordingAdam(0.01)
  trainer = _trainer(model, "upgrad", task_gradients="parameters", optimizer=optimizer)
  features, labels = _batch()
  shared = [v for v in model.trunk.trainable_variables
            if model.owners.owner(v) is None]
  with tf.GradientTape(persistent=True) as tape:
    predictions = model(features, training=True, seed=tf.zeros([2], tf.int64))
    losses = [_masked_squared(labels[t], predictions[t], features).value() for t in TASKS]
  rows = tf.stack([tf.concat([tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
                              for v, g in zip(shared, tape.gradient(l, shared))], 0)
                   for l in losses])
  labelled = tf.constant([True, True, False])
  direction, _ = trainer.weighting.combine_gradients(rows, trainer.step_seed(0), labelled)
  own = {v.ref(): g for v, g in zip(model.trainable_variables,
                                     tape.gradient(tf.add_n(losses), model.trainable_variables))}
  trainer.train(1)
  offset = 0
  for v in shared:
    size = v.shape.num_elements()
    np.testing.assert_allclose(optimizer.first_of(v).reshape(-1),
                               direction[offset:offset + size], rtol=1e-4, atol=1e-6,
                               err_msg=v.name)
    offset += size
  for v in model.trainable_variables:
    if model.owners.owner(v) is not None and own[v.ref()] is not None:
      np.testing.assert_allclose(optimizer.first_of(v), own[v.ref()], rtol=1e-5, atol=1e-7,
                                 err_msg=v.name)
  if tied:
    one = _model()
    one = MultiTaskModel(one.trunk, {"a": one.heads["a"], "c": one.heads["c"],
                                     "b": _TiedHead("hidden", 6, 3, one.trunk)})
    with pytest.raises(ConfigError, match="the head of task 'b' reads the trunk's shared"):
      _trainer(one, "mgda").train(1)


def test_representation_gradients_train_and_differ_from_parameter_gradients():
  """mgda on the representation (MGDA-UB) against mgda on the parameters from the same start:
  both lower the labelled tasks' losses; their trunk updates differ (a different problem)."""
  runs = {}
  for task_gradients in ("representation", "parameters"):
    trainer = _trainer(_model(), "mgda", task_gradients)
    first = trainer.train(1)
    last = trainer.train(200)
    runs[task_gradients] = trainer.model.trunk.trainable_variables[0].numpy()
    for t in ("a", "b"):
      assert last.tasks[t].metrics["loss"] < 0.5 * first.tasks[t].metrics["loss"], task_gradients
  assert not np.allclose(runs["representation"], runs["parameters"])


def test_where_no_one_representation_is_shared_it_is_one_line():
  with pytest.raises(ConfigError, match="needs every head to read one representation; the "
                                        "heads read {'a': 'hidden', 'b': 'low', 'c': 'hidden'}"):
    _trainer(_model(reads=("hidden", "low", "hidden")), "mgda")
  gated = MultiTaskModel(_GatedTrunk(TASKS), {t: _Head(t) for t in TASKS})
  with pytest.raises(ConfigError, match="needs every head to read one representation"):
    _trainer(gated, "mgda")
  with pytest.raises(ConfigError, match="needs a trunk shared by every task; this one has "
                                        "parts of task\\(s\\) \\['a'\\]"):
    _trainer(_model(trunk=_OwnedTrunk), "mgda")
  for method in ("db_mtl", "sdmgrad"):
    with pytest.raises(ConfigError, match="applies to a gradient method without per-parameter "
                                          f"state or samples, not --weighting={method}"):
      _trainer(_model(), method)
  with pytest.raises(ConfigError, match="not --weighting=uncertainty"):
    _trainer(_model(), "uncertainty")
  for fields, message in (
      ({"weighting": "sum"}, "applies to a gradient method (--weighting=pcgrad|"),
      ({"weighting": "db_mtl"}, "db_mtl keeps state per shared parameter"),
      ({"weighting": "moco"}, "moco keeps state per shared parameter"),
      ({"weighting": "excess_mtl"}, "excess_mtl keeps state per shared parameter"),
      ({"weighting": "sdmgrad"}, "sdmgrad takes three samples of each task's gradient on the "
                                 "parameters; it takes no --task_gradients=representation"),
      ({"weighting": "modo"}, "modo takes three samples"),
      ({"weighting": "mgda", "strategy": "mirrored"}, "runs on one device; with "
                                                      "--strategy=mirrored use"),
      ({"weighting": "mgda", "mode": "alternate"}, "--weighting applies to --mode=joint")):
    with pytest.raises(ConfigError, match=message.replace("|", "\\|").replace("(", "\\(")):
      RunConfig(task_set="toy", task_gradients="representation", **fields)



@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_rows_on_the_representation_train(tmp_path, precision):
  """The rows come in the compute type (fp16: under a loss scale): cast, unscaled, combined,
  and the step trains without a skipped step."""
  trained = run_in_process(TRAIN, "--task_set=synthetic", "--task_set_options=num_tasks=3",
                           "--weighting=upgrad", "--task_gradients=representation",
                           f"--precision={precision}", "--train_steps=40",
                           "--steps_per_loop=20", "--log_every=20",
                           f"--model_dir={tmp_path / 'm'}")
  assert trained.returncode == 0, trained.stderr
  assert "Finished at step 40 of 40: 0 step(s) skipped as non-finite" in trained.stderr
  assert "t2/weight=" in trained.stderr


def test_mtl_train_takes_the_flag_and_a_bad_value_is_one_line(tmp_path):
  trained = run_in_process(TRAIN, "--task_set=synthetic", "--task_set_options=num_tasks=4",
                           "--weighting=mgda", "--task_gradients=representation",
                           "--train_steps=60", "--steps_per_loop=20", "--log_every=20",
                           f"--model_dir={tmp_path / 'm'}")
  assert trained.returncode == 0, trained.stderr
  assert "t3/weight=" in trained.stderr
  bad = run_in_process(TRAIN, "--task_set=toy", "--task_gradients=activations",
                       f"--model_dir={tmp_path / 'bad'}")
  assert bad.returncode != 0
  assert "--task_gradients" in error_line(bad)


def test_the_gradient_methods_list_is_the_weightings_that_take_task_gradients():
  """mtlcore.choices.GRADIENT_METHODS (read before TensorFlow starts) against the methods."""
  made = {m: weighting.make_weighting(m, ["a", "b"]) for m in WEIGHTINGS if m != "static"}
  assert set(GRADIENT_METHODS) == {m for m, w in made.items() if w.needs_task_gradients}
  assert set(PER_PARAMETER_STATE) == {m for m, w in made.items() if w.needs_gradient_state}
  assert set(SAMPLED_GRADIENTS) == {m for m, w in made.items() if w.samples > 1}
