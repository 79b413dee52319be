"""Does a trunk of Keras layers train as well as the same trunk of mtlcore's layers?

  python3 -m mtlcore.benchmarks.studies.keras_parity --seeds=0,1,2,3,4

A new user's network: a SharedTrunk holding a keras.Sequential of two Dense(64, relu) layers,
a 10-class classification head and a regression head (mtlcore Linear layers), trained jointly
with Adam (1e-3, batch 64) for --steps steps on synthetic data: 16 Gaussian inputs, the class
the argmax of a fixed random linear map plus noise (so accuracy is well short of 100), the
regression target sin of another. The same run with the trunk built from two mtlcore Linear
layers is the reference. Each seed sets the initial weights of both and the data order; the
data set is the same for every run. Prints dev accuracy and dev regression MSE, mean +- std
over the seeds, for both trunks, as a Markdown table, with the wall time per run.
"""

import statistics
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2", "3", "4"], "Seeds, one run of each trunk per seed.")
flags.DEFINE_integer("steps", 2000, "Joint steps per run.")

INPUTS, HIDDEN, CLASSES = 16, 64, 10


def _data(n, seed):
  import numpy as np  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(1234)  # The problem: the same for every run and split.
  w, v = rng.normal(size=(INPUTS, CLASSES)), rng.normal(size=(INPUTS,)) / 4.0
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, INPUTS)).astype(np.float32)
  kind = np.argmax(x @ w + rng.normal(scale=2.0, size=(n, CLASSES)), -1).astype(np.int32)
  return x, {"kind": kind, "value": np.sin(x @ v)[:, None].astype(np.float32)}


def _run(trunk_kind, seed, steps):
  """(dev accuracy %, dev MSE, seconds) of one run."""
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from mtlcore import losses  # pylint: disable=g-import-not-at-top
  from mtlcore.layers import Linear  # pylint: disable=g-import-not-at-top
  from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead  # pylint: disable=g-import-not-at-top
  from mtlcore.optimizers import Adam  # pylint: disable=g-import-not-at-top
  from mtlcore.tasks import Ratio, Task  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import JointTrainer  # pylint: disable=g-import-not-at-top

  class KerasTrunk(SharedTrunk):
    def __init__(self):
      super().__init__()
      self.net = keras.Sequential([keras.layers.Dense(HIDDEN, activation="relu"),
                                   keras.layers.Dense(HIDDEN, activation="relu")])
      self.net.build((None, INPUTS))
      self.output_sizes = {"hidden": HIDDEN}

    def __call__(self, features, *, training, seed):
      return {"hidden": self.net(features["x"], training=training)}

  class LinearTrunk(SharedTrunk):
    def __init__(self, seed):
      super().__init__()
      self.first = Linear(INPUTS, HIDDEN, seed=seed)
      self.second = Linear(HIDDEN, HIDDEN, seed=seed + 100)
      self.output_sizes = {"hidden": HIDDEN}

    def __call__(self, features, *, training, seed):
      return {"hidden": tf.nn.relu(self.second(tf.nn.relu(self.first(features["x"]))))}

  class Head(TaskHead):
    def __init__(self, outputs, seed):
      super().__init__(reads="hidden")
      self.out = Linear(HIDDEN, outputs, seed=seed)

    def __call__(self, representation, features, *, training, seed):
      return self.out(representation)

  def cross_entropy(labels, logits, features):
    del features
    return Ratio(tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)),
                 tf.cast(tf.size(labels), tf.float32))

  keras.utils.set_random_seed(seed)
  trunk = KerasTrunk() if trunk_kind == "keras" else LinearTrunk(seed)
  model = MultiTaskModel(trunk, {"kind": Head(CLASSES, seed + 1), "value": Head(1, seed + 2)})
  tasks = [Task("kind", loss=cross_entropy),
           Task("value", loss=lambda l, p, f: losses.squared_error(l, p))]
  x, y = _data(20000, seed=0)
  stream = tf.data.Dataset.from_tensor_slices(({"x": x}, y)).shuffle(
      len(x), seed=seed).repeat().batch(64)
  trainer = JointTrainer(model=model, tasks=tasks, optimizer=Adam(1e-3), dataset=stream,
                         seed=seed)
  start = time.time()
  trainer.train(steps)
  seconds = time.time() - start
  x_dev, y_dev = _data(5000, seed=1)
  out = model({"x": tf.constant(x_dev)})
  accuracy = 100.0 * float(np.mean(np.argmax(out["kind"], -1) == y_dev["kind"]))
  mse = float(np.mean((out["value"].numpy() - y_dev["value"]) ** 2))
  return accuracy, mse, seconds


def main(argv):
  del argv
  import platform  # pylint: disable=g-import-not-at-top
  seeds = [int(s) for s in FLAGS.seeds]
  rows = []
  for trunk_kind in ("mtlcore", "keras"):
    runs = [_run(trunk_kind, seed, FLAGS.steps) for seed in seeds]
    acc, mse, sec = ([r[i] for r in runs] for i in range(3))
    rows.append(f"| {trunk_kind} | {statistics.mean(acc):.2f} ± {statistics.stdev(acc):.2f} | "
                f"{statistics.mean(mse):.4f} ± {statistics.stdev(mse):.4f} | "
                f"{statistics.median(sec):.1f} | {', '.join(f'{a:.2f}' for a in acc)} |")
  print(f"Seeds {seeds}, {FLAGS.steps} joint steps, machine {platform.processor() or platform.machine()}")
  print("| trunk | dev accuracy % | dev MSE | s per run (median) | accuracy per seed |")
  print("|---|---|---|---|---|")
  print("\n".join(rows))
  sys.stdout.flush()


if __name__ == "__main__":
  app.run(main)
