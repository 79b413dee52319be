"""Dropout that gives the same mask for the same seed, compiled or not.

Stateful random ops are reseeded by XLA and cannot be replayed after a restart, so every mask
here is a pure function of an explicit seed that the trainer derives from its seed and the
global step; replaying a step replays its masks exactly. TensorFlow's own stateless ops are
not used because their CPU kernels and XLA produce different streams for the same seed (even
with alg="philox"), which would make a compiled step drop different units than an uncompiled
one. The bits come instead from a counter-based integer hash (MurmurHash3's 32-bit finaliser)
in int64 arithmetic, which is exact on every backend.
"""

import tensorflow as tf

from mtlcore.errors import require_probability

_MASK32 = 0xFFFFFFFF


def _mix32(x):
  """MurmurHash3 fmix32 on int64 tensors holding values in [0, 2^32); a bijection."""
  shift, xor, mask = tf.bitwise.right_shift, tf.bitwise.bitwise_xor, tf.bitwise.bitwise_and
  x = xor(x, shift(x, 16))
  x = mask(x * 0x85EBCA6B, _MASK32)  # Wraps in int64; the low 32 bits are exact.
  x = xor(x, shift(x, 13))
  x = mask(x * 0xC2B2AE35, _MASK32)
  return xor(x, shift(x, 16))


def hash_uniform(shape, seed, stream=0):
  """Uniform float32 values in [0, 1) of `shape`, a pure function of (seed, stream, position).

  Args:
    shape: 1-D int tensor or list.
    seed: int tensor [2].
    stream: python int that separates independent streams under one seed.
  """
  xor, low = tf.bitwise.bitwise_xor, lambda x: tf.bitwise.bitwise_and(x, _MASK32)
  seed = tf.cast(seed, tf.int64)
  key = _mix32(xor(low(seed[0]), tf.constant(0x9E3779B9, tf.int64)))
  key = _mix32(xor(key, low(seed[1])))
  key = _mix32(xor(xor(key, low(tf.bitwise.right_shift(seed[1], 32))),
                   tf.constant((stream * 0x632BE5AB) & _MASK32, tf.int64)))
  index = tf.range(tf.cast(tf.reduce_prod(shape), tf.int64), dtype=tf.int64)
  bits = _mix32(xor(_mix32(xor(index, key)), tf.constant(0x5BD1E995, tf.int64)))
  top24 = tf.bitwise.right_shift(bits, 8)
  return tf.reshape(tf.cast(top24, tf.float32) * (1.0 / (1 << 24)), shape)


def dropout(inputs, *, rate, seed, stream=0, noise_shape=None):
  """Inverted dropout: zeroes each element with probability `rate`, scales the rest by 1/(1-rate).

  Args:
    inputs: float tensor of any shape.
    rate: python float in [0, 1).
    seed: int tensor of shape [2].
    stream: python int; different streams give independent masks under one seed.
    noise_shape: shape of the mask, broadcast against inputs (e.g. [B, 1, D] to drop the same
      features at every time step). Defaults to the shape of inputs.
  Returns:
    A tensor like `inputs`.
  """
  if rate == 0.0:
    return inputs
  shape = tf.shape(inputs) if noise_shape is None else noise_shape
  keep = hash_uniform(shape, seed, stream) >= rate
  return tf.where(keep, inputs / (1.0 - rate), tf.zeros_like(inputs))


class Dropout(tf.Module):
  """A dropout site with its own stream: its masks differ from every other site's.

  `__call__(inputs, seed=..., training=...)`: `seed` is the step seed [2]; `site` (an int
  unique within the model) selects this site's stream.
  """

  def __init__(self, rate, *, site, name=None):
    super().__init__(name=name)
    self.rate = require_probability(f"{self.name} rate", rate)
    self.site = int(site)

  def __call__(self, inputs, *, seed, training, noise_shape=None):
    if not training or self.rate == 0.0:
      return inputs
    return dropout(inputs, rate=self.rate, seed=seed, stream=self.site, noise_shape=noise_shape)
