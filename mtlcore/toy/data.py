"""The tutorial's toy problem: two regression tasks sharing a latent factor.

Inputs x are 10 standard-normal features. A common latent factor z = tanh(x . c) drives both
targets, each with a task-specific linear part and a little noise:
  y1 =  2.0 z + 0.5 x . u1 + noise,   y2 = -1.5 z + 0.5 x . u2 + noise   (noise std 0.01).
A shared ReLU layer can learn z once for both heads.
"""

import numpy as np

from mtlcore import batching
from mtlcore.errors import require_positive

NUM_FEATURES = 10
TASKS = ("y1", "y2")


def make_toy_data(num_examples, *, seed):
  """Returns (x [N, 10] float32, {"y1": [N, 1], "y2": [N, 1]} float32), a function of seed."""
  require_positive("num_examples", num_examples)
  rng = np.random.default_rng(seed)
  # The problem (directions c, u1, u2) is fixed; the seed only picks examples and noise.
  problem = np.random.default_rng(12345)
  c, u1, u2 = (problem.normal(size=NUM_FEATURES) / np.sqrt(NUM_FEATURES) for _ in range(3))
  x = rng.normal(size=(num_examples, NUM_FEATURES))
  z = np.tanh(2.0 * x @ c)
  y1 = 2.0 * z + 0.5 * x @ u1 + 0.01 * rng.normal(size=num_examples)
  y2 = -1.5 * z + 0.5 * x @ u2 + 0.01 * rng.normal(size=num_examples)
  as_column = lambda a: a.astype(np.float32)[:, None]
  return x.astype(np.float32), {"y1": as_column(y1), "y2": as_column(y2)}


def toy_dataset(num_examples, *, batch_size, seed, start=0):
  """An endless, shuffled tf.data.Dataset of ({"x": [B, 10]}, {"y1": [B, 1], "y2": [B, 1]}),
  beginning at batch `start` (mtlcore.batching: each epoch is a permutation drawn from
  (seed, epoch), so the stream can be rebuilt at any position)."""
  require_positive("batch_size", batch_size)
  x, y = make_toy_data(num_examples, seed=seed)
  make_dataset, _ = batching.in_memory(({"x": x}, y), batch_size=batch_size, seed=seed)
  return make_dataset(start)
