"""Warm start (--init_from, --freeze_trunk): a new run begins from a trained run's trunk and
its fitting heads; a frozen trunk stays bitwise equal; a trunk that does not fit is one line."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.trainers import build, run, warm_start
from mtlcore.trainers.config import RunConfig
from mtlcore.trainers.model_dir import ModelDir


def _weights(model_dir, which):
  """{key: value} of a checkpoint's model variables (best/ or checkpoints/)."""
  path = tf.train.latest_checkpoint(str(model_dir / which))
  reader = tf.train.load_checkpoint(path)
  prefix = "model/" if which == "best" else "trainer/model/"
  return {k[len(prefix):]: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(prefix) and k.endswith("VARIABLE_VALUE")}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
  """A toy run that trained y1 only."""
  model_dir = tmp_path_factory.mktemp("source")
  run.train(RunConfig(task_set="toy", mode="single", tasks=("y1",), model_dir=str(model_dir),
                      train_steps=200))
  return model_dir


def test_the_trunk_and_a_fitting_head_start_as_the_source_run_ended(source, tmp_path):
  config = build.resolve(RunConfig(task_set="toy", model_dir=str(tmp_path))).config
  resolved = build.resolve(config)
  model, _ = build.build_model(config, resolved.task_set, assets_dir=str(tmp_path))
  fresh_y2 = [v.numpy() for v in model.heads["y2"].variables]
  assert warm_start.warm_start(model, str(source)) == ["y1"]
  trained = _weights(source, "checkpoints")
  got = {v.name: v.numpy() for v in model.trunk.variables}
  assert got and len(got) == len([k for k in trained if k.startswith("trunk/")])
  np.testing.assert_array_equal(model.trunk.layer.w.numpy(),
                                trained["trunk/layer/w/.ATTRIBUTES/VARIABLE_VALUE"])
  np.testing.assert_array_equal(model.heads["y1"].layer.w.numpy(),
                                trained["heads/y1/layer/w/.ATTRIBUTES/VARIABLE_VALUE"])
  for before, v in zip(fresh_y2, model.heads["y2"].variables):  # Not in the source: fresh.
    np.testing.assert_array_equal(before, v.numpy())


def test_a_frozen_trunk_stays_bitwise_equal_while_a_new_head_trains(source, tmp_path):
  run.train(RunConfig(task_set="toy", mode="single", tasks=("y2",), model_dir=str(tmp_path),
                      init_from=str(source), freeze_trunk=True, train_steps=100))
  before, after = _weights(source, "checkpoints"), _weights(tmp_path, "checkpoints")
  trunk = [k for k in before if k.startswith("trunk/")]
  assert trunk
  for key in trunk:
    np.testing.assert_array_equal(before[key], after[key], err_msg=key)
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
  slots = [k for k in reader.get_variable_to_shape_map() if "optimizer/m/" in k]
  assert len(slots) == 2  # Only the y2 head's kernel and bias have Adam slots.
  assert ModelDir(tmp_path).read_config()["init_from"] == str(source)


def test_an_unfitting_trunk_is_one_line_naming_the_shapes(source, tmp_path):
  with pytest.raises(ConfigError, match=r"--init_from=.*trunk does not fit.*shape") as error:
    run.train(RunConfig(task_set="toy", options={"hidden_size": 30}, model_dir=str(tmp_path),
                        init_from=str(source), train_steps=10))
  assert "\n" not in str(error.value)


def test_a_shared_optimizer_serves_every_task_with_one_update_count(tmp_path):
  run.train(RunConfig(task_set="toy", mode="alternate", per_task_optimizer=False,
                      model_dir=str(tmp_path), train_steps=60))
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(tmp_path / "checkpoints")))
  keys = reader.get_variable_to_shape_map()
  iterations = [k for k in keys if k.endswith("iterations/.ATTRIBUTES/VARIABLE_VALUE")]
  assert len(iterations) == 1 and int(reader.get_tensor(iterations[0])) == 60
  slots = {k for k in keys if "/m/" in k and "trainer/optimizers/" in k}
  assert len(slots) == 6  # Trunk kernel and bias, and both heads' kernel and bias, once each.
