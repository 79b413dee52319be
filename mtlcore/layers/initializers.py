"""Seeded variable initialisers: the same seed gives the same weights on every run."""

import math

import tensorflow as tf


def glorot_uniform(shape, *, seed, fan_in=None, fan_out=None):
  """Glorot/Xavier uniform values of `shape`, float32.

  Args:
    shape: the variable's shape; fans default to its last two dimensions.
    seed: a pair of ints; the same pair gives the same values.
    fan_in, fan_out: override the fans (e.g. for a kernel that packs several gates).
  """
  fan_in = fan_in or (shape[-2] if len(shape) > 1 else shape[-1])
  fan_out = fan_out or shape[-1]
  limit = math.sqrt(6.0 / (fan_in + fan_out))
  return tf.random.stateless_uniform(shape, seed=seed, minval=-limit, maxval=limit,
                                       alg="philox")


def orthogonal(rows, cols, *, seed):
  """A [rows, cols] float32 matrix with orthonormal rows or columns (whichever fit)."""
  flat = tf.random.stateless_normal([max(rows, cols), min(rows, cols)], seed=seed,
                                    alg="philox")
  q, r = tf.linalg.qr(flat)
  q *= tf.sign(tf.linalg.diag_part(r))  # Makes the decomposition unique, as Saxe et al.
  return q if rows >= cols else tf.transpose(q)


def uniform(shape, *, seed, scale):
  """Uniform values in [-scale, scale] of `shape`, float32."""
  return tf.random.stateless_uniform(shape, seed=seed, minval=-scale, maxval=scale,
                                       alg="philox")
