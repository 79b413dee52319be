"""Small quadratic programs inside the compiled step: min 1/2 u^T Q u + c^T u s.t. u >= lower.

The gradient methods of mtlcore.weighting reduce to such problems over the tasks' Gram matrix
(K x K, K the number of tasks): UPGrad and DualProj project onto the dual cone of the task
gradients, MGDA's min-norm point is one after a change of variables. This module solves them
with a fixed graph whatever K is: a batched active-set method (Lawson & Hanson's NNLS in the
form of Bro & de Jong 1997, on Q and c directly) in one `tf.while_loop`, every problem of the
batch stepping at once. It terminates in finitely many steps for positive definite Q (each
outer step frees one bound, each inner step fixes at least one); `max_iterations` caps it, and
`residual` reports how far the answer is from the KKT conditions.

Q is solved in float64 whatever the inputs' dtype (a Gram matrix of nearly parallel gradients
is ill-conditioned, and K x K solves cost nothing beside the step), and the answer is cast back.
Compiles under XLA on CPU and GPU (tests/test_bounded_quadratic.py checks the CPU compile).
"""

import tensorflow as tf


def _as_batch(x, batch, k):
  return tf.broadcast_to(tf.cast(x, tf.float64), [batch, k])


def solve(q, c, lower, *, max_iterations=None, tolerance=1e-9):
  """argmin_u 1/2 u^T q u + c_b^T u subject to u >= lower_b, for each problem b of a batch.

  Args:
    q: [K, K] symmetric positive definite (add a ridge to a Gram matrix first), float32/64.
    c: [B, K] or [K] (broadcast), the linear terms.
    lower: [B, K] or [K], the bounds (-inf is not allowed: every coordinate is bounded).
    max_iterations: cap on the loop's steps (default 3K + 10: each coordinate is freed at most
      a few times in practice; the method needs about K).
    tolerance: a bound is released when its coordinate's descent slope exceeds `tolerance`
      times the problem's scale (max |diag q| (1 + max |lower|) + max |c|).
  Returns:
    u [B, K] in the inputs' dtype (float32 unless q is float64).
  """
  dtype = q.dtype
  q = tf.cast(q, tf.float64)
  k = q.shape[-1]
  c, lower = tf.convert_to_tensor(c), tf.convert_to_tensor(lower)
  batch = max(c.shape[0] if c.shape.rank == 2 else 1, lower.shape[0] if lower.shape.rank == 2 else 1)
  c, lower = _as_batch(c, batch, k), _as_batch(lower, batch, k)
  # u = lower + x, x >= 0: min 1/2 x^T q x + (q lower + c)^T x.
  linear = tf.linalg.matvec(q, lower) + c  # [B, K]
  scale = (tf.reduce_max(tf.abs(tf.linalg.diag_part(q))) * (1.0 + tf.reduce_max(tf.abs(lower)))
           + tf.reduce_max(tf.abs(c)))
  tol = tolerance * tf.maximum(scale, 1e-300)
  eye = tf.eye(k, dtype=tf.float64)
  cap = 3 * k + 10 if max_iterations is None else max_iterations

  def solve_on(passive):
    """The minimiser over the passive (free) coordinates, the others held at 0: [B, K]."""
    both = passive[:, :, None] & passive[:, None, :]
    system = tf.where(both, q[None], eye[None])
    rhs = tf.where(passive, -linear, 0.0)
    return tf.where(passive, tf.linalg.solve(system, rhs[:, :, None])[:, :, 0], 0.0)

  def body(i, x, passive, inner, done):
    slope = -(tf.linalg.matvec(q, x) + linear)  # The descent direction's entries.
    candidates = tf.where(passive, -tf.constant(float("inf"), tf.float64), slope)
    best = tf.reduce_max(candidates, axis=1)
    optimal = ~inner & (best <= tol)
    done_now = done | optimal
    grow = ~inner & ~done_now
    added = tf.one_hot(tf.argmax(candidates, axis=1), k, on_value=True, off_value=False,
                       dtype=tf.bool)
    passive_now = tf.where(grow[:, None], passive | added, passive)
    s = solve_on(passive_now)
    bad = passive_now & (s <= 0.0)
    feasible = ~tf.reduce_any(bad, axis=1)
    # Infeasible: move from x towards s as far as the first bound allows, drop what hits it.
    ratio = tf.where(bad, x / tf.maximum(x - s, 1e-300), tf.constant(float("inf"), tf.float64))
    alpha = tf.minimum(tf.reduce_min(ratio, axis=1), 1.0)
    moved = x + alpha[:, None] * (s - x)
    kept = passive_now & (moved > 0.0) & ~(bad & (ratio <= alpha[:, None]))
    x_next = tf.where(feasible[:, None], s, tf.where(kept, moved, 0.0))
    passive_next = tf.where(feasible[:, None], passive_now, kept)
    active = ~done_now
    return (i + 1, tf.where(active[:, None], x_next, x),
            tf.where(active[:, None], passive_next, passive),
            active & ~feasible, done_now)

  x0 = tf.zeros([batch, k], tf.float64)
  none = tf.zeros([batch, k], tf.bool)
  start = (tf.constant(0), x0, none, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.bool))
  _, x, _, _, _ = tf.while_loop(
      lambda i, x, p, inner, done: (i < cap) & ~tf.reduce_all(done), body, start)
  out_dtype = tf.float64 if dtype == tf.float64 else tf.float32
  return tf.cast(lower + x, out_dtype)


def residual(q, c, lower, u):
  """How far u [B, K] is from the KKT conditions of `solve`'s problems, relative to their
  scale: max over problems of max(bound violation, |slope| of free coordinates, negative
  multiplier of bound ones, complementarity). 0 at the exact answer."""
  q = tf.cast(q, tf.float64)
  k = q.shape[-1]
  u = tf.cast(u, tf.float64)
  batch = u.shape[0]
  c, lower = _as_batch(c, batch, k), _as_batch(lower, batch, k)
  gradient = tf.linalg.matvec(q, u) + c  # = multiplier >= 0, 0 where u > lower.
  gap = u - lower
  scale = (tf.reduce_max(tf.abs(tf.linalg.diag_part(q))) * (1.0 + tf.reduce_max(tf.abs(u)))
           + tf.reduce_max(tf.abs(c)))
  worst = tf.reduce_max(tf.stack([
      tf.reduce_max(tf.nn.relu(-gap)) * tf.reduce_max(tf.abs(tf.linalg.diag_part(q))),
      tf.reduce_max(tf.nn.relu(-gradient)),
      tf.reduce_max(tf.where(gap > 1e-9 * (1.0 + tf.abs(lower)), tf.abs(gradient), 0.0))]))
  return worst / tf.maximum(scale, 1e-300)
