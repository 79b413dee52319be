"""MTAN (mtlcore.task_attention): the attention masks computed as the paper writes them over
feature vectors, each task owning its masks and no other task's loss reaching them."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.synthetic.task_set import SyntheticTaskSet

TASKS = ("t0", "t1", "t2")


def _model(**options):
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": "mtan", "hidden_size": 5, **options})
  return task_set.build_model(list(TASKS), seed=0, assets_dir=None)


def test_each_layer_is_masked_per_task_as_the_paper_writes():
  trunk = _model(layers=3).trunk
  x = np.random.default_rng(0).normal(size=(7, 6))
  relu = lambda v: np.maximum(v, 0.0)
  sigmoid = lambda v: 1.0 / (1.0 + np.exp(-v))
  dense = lambda layer, v: v @ layer.w.numpy() + layer.b.numpy()
  s, attended, masks = x, {}, {t: [] for t in TASKS}
  for l, layer in enumerate(trunk.shared):
    s = relu(dense(layer, s))
    for t in TASKS:
      module = trunk.attention[t][l]
      u = s if l == 0 else np.concatenate([s, attended[t]], axis=-1)
      masks[t].append(sigmoid(dense(module.mask, relu(dense(module.hidden, u)))))
      attended[t] = masks[t][-1] * s
  features = {"x": tf.constant(x, tf.float32)}
  got = trunk(features, training=False, seed=None)
  got_masks = trunk.masks(features)
  for t in TASKS:
    np.testing.assert_allclose(got[t], attended[t], rtol=1e-4, atol=1e-5)
    for want, mask in zip(masks[t], got_masks[t]):
      np.testing.assert_allclose(mask, want, rtol=1e-4, atol=1e-6)
      assert np.all((mask.numpy() > 0) & (mask.numpy() < 1))


def test_each_task_owns_its_masks_and_no_other_loss_reaches_them():
  model = _model(layers=2)
  trunk, owner = model.trunk, model.owners.owner
  for t in TASKS:
    assert all(owner(v) == t for m in trunk.attention[t] for v in m.trainable_variables)
  assert all(owner(v) is SHARED for layer in trunk.shared for v in layer.trainable_variables)
  x = tf.constant(np.random.default_rng(1).normal(size=(8, 6)), tf.float32)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(trunk({"x": x}, training=True, seed=None)["t0"]))
  t1_masks = [v for m in trunk.attention["t1"] for v in m.trainable_variables]
  grads = tape.gradient(loss, [*t1_masks, *trunk.shared[0].trainable_variables])
  assert all(g is None for g in grads[:len(t1_masks)])
  assert all(np.abs(g.numpy()).sum() > 0 for g in grads[len(t1_masks):])


def test_bad_sizes_are_one_line_errors():
  with pytest.raises(ConfigError, match="layers"):
    _model(layers=0)
  with pytest.raises(ConfigError, match="hidden_size"):
    _model(hidden_size=0)
