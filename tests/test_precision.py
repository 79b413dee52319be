"""Mixed precision: bf16 and fp16 runs converge with float32 variables; fp16's loss scale
skips an overflowing step (joint or alternating) without touching any optimizer and halves;
a real NaN still counts; a bf16 tagger step compiles with XLA."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf

from mtlcore.toy.data import toy_dataset
from mtlcore.tagging import tagger
from mtlcore.toy.network import build_toy_model, toy_tasks
from mtlcore.optimizers import Adam
from mtlcore.precision import LossScale
from mtlcore.sampling import TaskSampler
from mtlcore.trainers import AlternatingTrainer, JointTrainer
from mtlcore.trainers.config import RunConfig
from mtlcore.trainers.run import train


def _final_losses(precision, mode):
  result = train(RunConfig(task_set="toy", mode=mode, model_dir=tempfile.mkdtemp(),
                           precision=precision, epochs=5.0, summaries=False))
  return {t: logs.metrics["loss"] for t, logs in result.logs.tasks.items()}


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_bf16_and_fp16_toy_runs_converge_like_fp32(mode):
  reference = _final_losses("fp32", mode)
  for precision in ("bf16", "fp16"):
    losses = _final_losses(precision, mode)
    for task, loss in losses.items():
      # The initial loss is about 1-2; fp32 ends near 0.005.
      assert loss < 2 * reference[task] + 0.005, (precision, task, loss, reference[task])


def _fp16_joint(scale):
  model = build_toy_model(seed=0)
  model.set_compute_dtype(tf.float16)
  trainer = JointTrainer(model=model, tasks=toy_tasks(), optimizer=Adam(0.01),
                         dataset=toy_dataset(64, batch_size=16, seed=0),
                         loss_scale=LossScale(scale, growth_interval=3))
  features, labels = next(iter(toy_dataset(64, batch_size=16, seed=0)))
  return trainer, features, labels


def test_an_overflowing_fp16_step_is_skipped_and_halves_the_scale():
  trainer, features, labels = _fp16_joint(2.0**40)  # Scaled gradients overflow fp16.
  before = [v.numpy().tobytes() for v in trainer.model.trainable_variables]
  _, bad, _ = trainer.step_functions()["joint"](features, labels)
  assert int(bad) == 0 and int(trainer.nonfinite_steps.numpy()) == 0  # Not a NaN step.
  assert int(trainer.optimizer.iterations.numpy()) == 0
  assert [v.numpy().tobytes() for v in trainer.model.trainable_variables] == before
  assert float(trainer.loss_scale.scale.numpy()) == 2.0**39
  assert int(trainer.global_step.numpy()) == 1  # The batch was consumed.

  trainer.loss_scale.scale.assign(2.0**10)
  for _ in range(3):
    trainer.step_functions()["joint"](features, labels)
  assert int(trainer.optimizer.iterations.numpy()) == 3
  assert float(trainer.loss_scale.scale.numpy()) == 2.0**11  # Doubled after 3 good steps.
  assert [v.numpy().tobytes() for v in trainer.model.trainable_variables] != before
  assert all(v.dtype == tf.float32 for v in trainer.model.trainable_variables)


def test_a_nan_loss_under_fp16_is_a_nonfinite_step_not_an_overflow():
  trainer, features, labels = _fp16_joint(2.0**10)
  labels = dict(labels, y1=labels["y1"] * np.nan)
  _, bad, _ = trainer.step_functions()["joint"](features, labels)
  assert int(bad) == 1 and int(trainer.nonfinite_steps.numpy()) == 1
  assert int(trainer.optimizer.iterations.numpy()) == 0


def test_a_bf16_tagger_step_compiles_with_xla_and_matches_fp32_closely():
  config = tagger.TaggerConfig(word_dim=8, char_dim=4, char_filters=4, hidden_size=8,
                               crf=("chunk",), reads={"pos": 1})
  rng = np.random.default_rng(0)
  length = tf.constant([5, 3], tf.int32)
  features = {"words": tf.constant(rng.integers(1, 20, (2, 6)), tf.int32),
              "chars": tf.constant(rng.integers(1, 10, (2, 6, 4)), tf.int32), "length": length}
  labels = {"pos": tf.constant(rng.integers(0, 5, (2, 6)), tf.int32),
            "chunk": tf.constant(rng.integers(0, 3, (2, 6)), tf.int32)}
  losses = {}
  for dtype in (tf.float32, tf.bfloat16):
    model = tagger.build_tagger(config, num_words=20, num_chars=10,
                                num_tags={"pos": 5, "chunk": 3}, seed=0)
    model.set_compute_dtype(dtype)
    tasks = tagger.tagging_tasks(model, ("pos", "chunk"))
    trainer = JointTrainer(model=model, tasks=tasks, optimizer=Adam(0.01),
                           dataset=lambda start: None, jit_compile=True)
    outputs = model(features, training=False)
    assert all(o.dtype == tf.float32 for o in outputs.values())
    losses[dtype] = [float(t.loss(labels[t.name], outputs[t.name], features).value())
                     for t in tasks]
    trainer.step_functions()["joint"](features, labels)
    assert int(trainer.optimizer.iterations.numpy()) == 1
  np.testing.assert_allclose(losses[tf.bfloat16], losses[tf.float32], rtol=0.05)


def test_an_overflowing_alternating_step_advances_no_tasks_adam():
  model = build_toy_model(seed=0)
  model.set_compute_dtype(tf.float16)
  optimizers = {t: Adam(0.01) for t in ("y1", "y2")}
  trainer = AlternatingTrainer(
      model=model, tasks=toy_tasks(), optimizers=optimizers,
      datasets={t: toy_dataset(64, batch_size=16, seed=0) for t in optimizers},
      sampler=TaskSampler(["y1", "y2"], seed=0), loss_scale=LossScale(2.0**40))
  features, labels = next(iter(toy_dataset(64, batch_size=16, seed=0)))
  _, bad = trainer.step_functions()["y1"](features, labels)
  assert int(bad) == 0 and int(trainer.nonfinite_steps.numpy()) == 0
  assert [int(o.iterations.numpy()) for o in optimizers.values()] == [0, 0]
  assert float(trainer.loss_scale.scale.numpy()) == 2.0**39
  assert int(trainer.task_steps["y1"].numpy()) == 1  # Its batch was consumed.
