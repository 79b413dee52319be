"""Embed: a lookup table from integer ids to vectors."""

import tensorflow as tf

from mtlcore.errors import require_positive
from mtlcore.layers import initializers


class Embed(tf.Module):
  """Maps int ids [...] to float32 vectors [..., embed_dim].

  Ids must lie in [0, vocab_size); id 0 is conventionally padding but is an ordinary row here
  (masking is the caller's job, by sequence length).
  """

  def __init__(self, vocab_size, embed_dim, *, seed, scale=0.1, name=None):
    """Args:
      vocab_size: number of rows.
      embed_dim: size of each vector.
      seed: int; the table is a pure function of it.
      scale: initial values are uniform in [-scale, scale].
      name: module name.
    """
    super().__init__(name=name)
    self.vocab_size = require_positive(f"{self.name} vocab_size", vocab_size)
    self.embed_dim = require_positive(f"{self.name} embed_dim", embed_dim)
    self.embeddings = tf.Variable(
        initializers.uniform([vocab_size, embed_dim], seed=[seed, 0], scale=scale),
        name="embeddings")

  def __call__(self, ids, dtype=tf.float32):
    """Vectors [..., embed_dim] of `dtype` (the compute type, mtlcore.precision)."""
    return tf.cast(tf.gather(self.embeddings, ids), dtype)
