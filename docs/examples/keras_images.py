"""Keras 3 layers in a multi-task model: a small CNN trunk over generated images, a
classification head and a regression head, trained alternately and jointly, then exported.

Each 16x16 image holds one bright square or cross on noise; task `kind` says which (2
classes), task `size` regresses its side as a fraction of the image's (4 to 10 pixels: 0.25 to
0.625). The tasks have data sets of their own
sizes in alternating mode, and in joint mode a third of the examples miss the size label
(NaN), which adds no loss, gradient or BatchNormalization update to that head.

  python3 docs/examples/keras_images.py [EXPORT_DIR]
"""

import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from mtlcore import export
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.optimizers import Adam
from mtlcore.sampling import TaskSampler
from mtlcore.tasks import Ratio, Task
from mtlcore.trainers import AlternatingTrainer, JointTrainer

SIDE = 16


def images(n, seed):
  """n images [n, 16, 16, 1] with labels {"kind": int32 [n], "size": float32 [n, 1]}."""
  rng = np.random.default_rng(seed)
  x = rng.normal(0.0, 0.3, size=(n, SIDE, SIDE, 1)).astype(np.float32)
  kind = rng.integers(0, 2, n).astype(np.int32)
  size = rng.integers(4, 11, n)
  for i in range(n):
    r, c, s = *rng.integers(0, SIDE - size[i] + 1, 2), size[i]
    if kind[i] == 0:
      x[i, r:r + s, c:c + s] += 1.0  # A square.
    else:
      x[i, r + s // 2, c:c + s] += 1.0  # A cross.
      x[i, r:r + s, c + s // 2] += 1.0
  return x, {"kind": kind, "size": (size[:, None] / SIDE).astype(np.float32)}


class ConvTrunk(SharedTrunk):
  """images [B, 16, 16, 1] -> {"features": [B, 32]}: a keras.Sequential CNN."""

  def __init__(self):
    super().__init__()
    self.cnn = keras.Sequential([
        keras.layers.Conv2D(16, 3, padding="same", use_bias=False),
        keras.layers.BatchNormalization(momentum=0.9), keras.layers.ReLU(), keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.GlobalMaxPooling2D(), keras.layers.Dropout(0.1)])
    self.cnn.build((None, SIDE, SIDE, 1))  # Built before the model is made.
    self.output_sizes = {"features": 32}

  def __call__(self, features, *, training, seed):
    return {"features": self.cnn(features["image"], training=training)}


class DenseHead(TaskHead):
  """[B, 32] -> [B, outputs]: BatchNormalization and a Dense layer of its own."""

  def __init__(self, outputs):
    super().__init__(reads="features")
    self.net = keras.Sequential([keras.layers.BatchNormalization(momentum=0.9),
                                 keras.layers.Dense(outputs)])
    self.net.build((None, 32))

  def __call__(self, representation, features, *, training, seed):
    return self.net(representation, training=training)


def cross_entropy(labels, logits, features):
  del features
  losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
  return Ratio(tf.reduce_sum(losses), tf.cast(tf.size(labels), tf.float32))


def accuracy(labels, logits, features):
  del features
  right = tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32)
  return Ratio(tf.reduce_sum(right), tf.cast(tf.size(labels), tf.float32))


def squared_error(labels, predictions, features):
  """Over the labelled targets only: a NaN target adds no loss and no gradient."""
  del features
  known = ~tf.math.is_nan(labels)
  error = tf.where(known, labels - predictions, 0.0)
  return Ratio(tf.reduce_sum(tf.square(error)), tf.reduce_sum(tf.cast(known, tf.float32)))


def stream(x, labels, seed):
  return tf.data.Dataset.from_tensor_slices(({"image": x}, labels)).shuffle(
      len(x), seed=seed).repeat().batch(32)


def main(export_dir, steps=300):
  keras.utils.set_random_seed(0)  # The Keras layers' initial weights.
  tasks = [Task("kind", loss=cross_entropy, metrics={"accuracy": accuracy}),
           Task("size", loss=squared_error)]
  x_test, y_test = images(256, seed=9)
  results = {}
  for mode in ("alternate", "joint"):
    model = MultiTaskModel(ConvTrunk(), {"kind": DenseHead(2), "size": DenseHead(1)})
    if mode == "alternate":  # Each task its own data set, of its own size.
      data = {"kind": images(2000, seed=1), "size": images(500, seed=2)}
      trainer = AlternatingTrainer(
          model=model, tasks=tasks, optimizers={t.name: Adam(1e-2) for t in tasks},
          datasets={t: stream(*data[t], seed=i) for i, t in enumerate(data)},
          sampler=TaskSampler(["kind", "size"], [0.5, 0.5], seed=0), seed=0)
    else:  # One data set with both labels; a third of the sizes missing.
      x, y = images(2000, seed=3)
      y["size"][::3] = np.nan
      trainer = JointTrainer(model=model, tasks=tasks, optimizer=Adam(1e-2),
                             dataset=stream(x, y, seed=0), seed=0)
    for _ in range(steps // 100):
      logs = trainer.train(100)
    trainer.close()  # Its input iterators go now, not at a later garbage collection.
    predictions = model({"image": x_test})
    results[mode] = {
        "accuracy": float(np.mean(np.argmax(predictions["kind"], -1) == y_test["kind"])),
        "size_mae": float(np.mean(np.abs(predictions["size"] - y_test["size"]))),
        "train_loss": {t: logs.tasks[t].metrics["loss"] for t in logs.tasks}}
    print(mode, results[mode])
  signature = {"image": tf.TensorSpec([None, SIDE, SIDE, 1], tf.float32, name="image")}
  export.export_model(export_dir, model, ["kind", "size"], signature, atomically=False)
  served = tf.saved_model.load(export_dir).signatures["serving_default"]
  print("served", {k: v.shape.as_list() for k, v in served(image=x_test[:4]).items()})
  return results


if __name__ == "__main__":
  main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp())
