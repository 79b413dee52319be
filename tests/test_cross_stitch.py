"""Cross-stitch networks (mtlcore.cross_stitch): the paper's units computed as written, their
near-identity start, and ownership by which losses reach a variable."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.synthetic.task_set import SyntheticTaskSet

TASKS = ("t0", "t1", "t2")


def _model(**options):
  task_set = SyntheticTaskSet({"num_tasks": 3, "input_dim": 6, "num_examples": 64,
                               "architecture": "cross_stitch", "hidden_size": 5, **options})
  return task_set.build_model(list(TASKS), seed=0, assets_dir=None)


def test_the_units_mix_the_columns_as_the_paper_writes_and_start_near_identity():
  trunk = _model(layers=3, self_weight=0.8).trunk
  for unit in trunk.units:
    alpha = np.stack([unit[t].alpha.numpy() for t in TASKS])
    np.testing.assert_allclose(alpha, [[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]],
                               rtol=1e-6)
  for l, unit in enumerate(trunk.units):  # Any mixing, so the reference checks which is which.
    for i, t in enumerate(TASKS):
      unit[t].alpha.assign(tf.random.stateless_normal([3], seed=[l, i]))
  x = np.random.default_rng(0).normal(size=(7, 6))
  relu = lambda v: np.maximum(v, 0.0)
  inputs = {t: x for t in TASKS}
  for l, unit in enumerate(trunk.units):
    z = [relu(inputs[t] @ trunk.columns[t][l].w.numpy() + trunk.columns[t][l].b.numpy())
         for t in TASKS]
    inputs = {t: sum(a * zj for a, zj in zip(unit[t].alpha.numpy(), z)) for t in TASKS}
  got = trunk({"x": tf.constant(x, tf.float32)}, training=False, seed=None)
  for t in TASKS:
    np.testing.assert_allclose(got[t], inputs[t], rtol=1e-4, atol=1e-5)


def test_a_task_owns_its_last_row_and_every_loss_reaches_the_columns_and_earlier_units():
  model = _model(layers=2)
  trunk, owner = model.trunk, model.owners.owner
  for t in TASKS:
    assert owner(trunk.units[-1][t].alpha) == t
    assert owner(trunk.units[0][t].alpha) is SHARED
    assert all(owner(v) is SHARED for layer in trunk.columns[t] for v in layer.trainable_variables)
  x = tf.constant(np.random.default_rng(1).normal(size=(8, 6)), tf.float32)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(tf.square(trunk({"x": x}, training=True, seed=None)["t0"]))
  others = [trunk.columns["t1"][0].w, trunk.units[0]["t1"].alpha, trunk.units[-1]["t1"].alpha]
  column, earlier_row, last_row = tape.gradient(loss, others)
  assert np.abs(column.numpy()).sum() > 0 and np.abs(earlier_row.numpy()).sum() > 0
  assert last_row is None  # t1's last row feeds t1's representation alone.


def test_bad_sizes_are_one_line_errors():
  with pytest.raises(ConfigError, match="layers"):
    _model(layers=0)
  with pytest.raises(ConfigError, match="--self_weight must be in \\[0, 1\\], got 1.5"):
    _model(self_weight=1.5)
