"""Built-in heads: an affine map of one representation, and pooling of token vectors first.

`DenseHead` reads an example-level representation [B, H]; `PooledHead` reads a token-level
one [B, T, H] (a sentence classifier over a token-level trunk), pools the real tokens (the first
`lengths` of each row, from a feature) by their mean, their maximum or a learned attention,
and maps the pooled vector. Both end in mtlcore.layers.Linear; the task kinds
(mtlcore.task_kinds) build them.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.layers import Linear
from mtlcore.model import TaskHead

POOLINGS = ("mean", "max", "attention")


class DenseHead(TaskHead):
  """representation [B, H] -> [B, outputs], or [B] when `squeeze` (one output per example)."""

  def __init__(self, *, reads, input_size, outputs, seed, squeeze=False, name=None):
    super().__init__(reads=reads, name=name)
    if squeeze and outputs != 1:
      raise ConfigError(f"{self.name}: squeeze needs one output, got {outputs}.")
    self.squeeze = squeeze
    self.out = Linear(input_size, outputs, seed=seed, name="out")

  def __call__(self, representation, features, *, training, seed):
    outputs = self.out(representation)
    return outputs[..., 0] if self.squeeze else outputs


class PooledHead(DenseHead):
  """token vectors [B, T, H] -> pooled [B, H] -> DenseHead's [B, outputs] (or [B]).

  The real tokens of row b are its first features[lengths][b]; padding never enters the pool.
  Pooling "mean" averages them, "max" takes each unit's maximum, "attention" weights them by
  a softmax over a learned score per token (Linear H -> 1). A row without tokens pools to 0.
  """

  def __init__(self, *, reads, input_size, outputs, seed, pooling="mean", lengths="length",
               squeeze=False, name=None):
    super().__init__(reads=reads, input_size=input_size, outputs=outputs, seed=seed,
                     squeeze=squeeze, name=name)
    if pooling not in POOLINGS:
      raise ConfigError(f"{self.name}: pooling must be one of {list(POOLINGS)}, got "
                        f"{pooling!r}.")
    self.pooling, self.lengths = pooling, lengths
    self.score = (Linear(input_size, 1, seed=seed + 1, name="score")
                  if pooling == "attention" else None)

  def pool(self, tokens, features):
    """[B, T, H] -> [B, H] over each row's real tokens."""
    tokens = tf.convert_to_tensor(tokens)
    if self.lengths not in features:
      raise ConfigError(f"{self.name}: the features have no '{self.lengths}' (tokens per "
                        f"row) to pool by; they have {sorted(features)}.")
    mask = tf.sequence_mask(features[self.lengths], tf.shape(tokens)[1])
    any_token = tf.reduce_any(mask, 1, keepdims=True)  # [B, 1]
    if self.pooling == "max":
      lowest = tf.cast(tokens.dtype.min, tokens.dtype)
      pooled = tf.reduce_max(tf.where(mask[..., None], tokens, lowest), 1)
      return tf.where(any_token, pooled, tf.zeros_like(pooled))
    if self.pooling == "mean":
      weights = tf.cast(mask, tokens.dtype)
    else:
      scores = tf.cast(self.score(tokens)[..., 0], tf.float32)
      scores = tf.where(mask, scores, tf.float32.min)
      weights = tf.cast(tf.nn.softmax(scores, -1) * tf.cast(mask, tf.float32), tokens.dtype)
    total = tf.reduce_sum(weights, 1, keepdims=True)
    weights = weights / tf.maximum(total, tf.cast(1e-9, tokens.dtype))
    return tf.reduce_sum(tokens * weights[..., None], 1)

  def __call__(self, representation, features, *, training, seed):
    return super().__call__(self.pool(representation, features), features, training=training,
                            seed=seed)
