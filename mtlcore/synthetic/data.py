"""K regression tasks whose correlation is set, after Ma et al. 2018 (MMoE), section 3.2.

The paper's generator for two tasks: orthogonal unit vectors u_1, u_2 in R^d; weights
w_1 = c u_1 and w_2 = c (p u_1 + sqrt(1 - p^2) u_2), so cos(w_1, w_2) = p; inputs x ~ N(0, I_d);
labels y_k = w_k . x + sum_{i=1..m} sin(alpha_i w_k . x + beta_i) + eps_k, eps_k ~ N(0, 0.01)
(variance). For K tasks, w_k = c (p u_1 + sqrt(1 - p^2) u_k) for every k >= 2 with u_1..u_K
orthonormal: each task's weight vector has cosine p with task 1's and p^2 with every other's;
at K = 2 it is the paper's. The paper notes that the labels' Pearson correlation follows p but
is not equal to it (the sine terms).

alpha_i, beta_i ~ N(0, 1) and the u_k are drawn once from `seed`; the examples of each split
from their own stream of the same seed, so a split does not change with another's size.
"""

import numpy as np

NOISE_VARIANCE = 0.01  # The paper's eps ~ N(0, 0.01).


def weight_vectors(num_tasks, correlation, input_dim, *, scale=1.0, seed=0):
  """float64 [K, d]: row k is w_k (see the module). Raises ValueError for K > d or
  |correlation| > 1."""
  if not 1 <= num_tasks <= input_dim:
    raise ValueError(f"num_tasks must be between 1 and input_dim={input_dim} (the tasks' "
                     f"directions are orthonormal), got {num_tasks}.")
  if not -1.0 <= correlation <= 1.0:
    raise ValueError(f"correlation must be in [-1, 1], got {correlation}.")
  rng = np.random.default_rng([seed, 0])
  u, _ = np.linalg.qr(rng.normal(size=(input_dim, num_tasks)))  # Orthonormal columns.
  u = u.T
  w = np.empty((num_tasks, input_dim))
  w[0] = scale * u[0]
  for k in range(1, num_tasks):
    w[k] = scale * (correlation * u[0] + np.sqrt(1.0 - correlation**2) * u[k])
  return w


def sinusoids(count, *, seed=0):
  """(alpha [m], beta [m]), float64, the shared shape of the sine terms."""
  rng = np.random.default_rng([seed, 1])
  return rng.normal(size=count), rng.normal(size=count)


def labels_of(x, w, alpha, beta, rng):
  """float32 [N, K]: y_k = w_k . x + sum_i sin(alpha_i w_k . x + beta_i) + eps_k."""
  projected = x @ w.T  # [N, K]
  waves = np.sin(projected[..., None] * alpha + beta).sum(-1)
  noise = rng.normal(scale=np.sqrt(NOISE_VARIANCE), size=projected.shape)
  return (projected + waves + noise).astype(np.float32)


def make_split(num_examples, w, alpha, beta, *, seed, split):
  """(x float32 [N, d], y float32 [N, K]) of `split` (an integer: its own random stream)."""
  rng = np.random.default_rng([seed, 2, split])
  x = rng.normal(size=(num_examples, w.shape[1]))
  return x.astype(np.float32), labels_of(x, w, alpha, beta, rng)
