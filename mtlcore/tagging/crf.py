"""Linear-chain CRF: the forward algorithm and Viterbi decoding, written for XLA.

Math first: `crf_log_likelihood` and `crf_decode` are pure functions of tensors, checked in
the tests against brute-force enumeration of every tag path; `CRF` only holds the transition
scores. Both loops run over time with `tf.while_loop`, reading per-step inputs through a
TensorArray (its gradient is a write, so the backward pass stays linear in T).

Shapes: emissions float32 [B, T, C] (per-token tag scores), tags int32 [B, T], lengths int32
[B] (>= 1 for scored sentences; padding positions are ignored), transitions [C, C] with
transitions[i, j] the score of tag j following tag i, start/end [C] the scores of a sentence
beginning or ending with a tag.
"""

import tensorflow as tf

from mtlcore.errors import require_positive


def _time_major_array(x, steps):
  """[B, T, ...] -> a TensorArray of T elements [B, ...]."""
  x = tf.convert_to_tensor(x)
  element_shape = tf.TensorShape([None]).concatenate(x.shape[2:])
  return tf.TensorArray(x.dtype, size=steps, element_shape=element_shape).unstack(
      tf.transpose(x, [1, 0] + list(range(2, x.shape.rank))))


def crf_log_norm(emissions, lengths, transitions, start, end):
  """log Z per sentence [B]: log-sum-exp of the scores of all tag paths (forward algorithm)."""
  steps = tf.shape(emissions)[1]
  inputs = _time_major_array(emissions, steps)
  mask = _time_major_array(tf.sequence_mask(lengths, steps, dtype=emissions.dtype)[:, :, None],
                           steps)

  def step(t, alpha):
    scores = alpha[:, :, None] + transitions[None]  # [B, from C, to C]
    new = tf.reduce_logsumexp(scores, axis=1) + inputs.read(t)
    keep = mask.read(t)
    return t + 1, keep * new + (1.0 - keep) * alpha  # Past the end, alpha stays.

  alpha0 = start[None] + inputs.read(0)
  _, alpha = tf.while_loop(lambda t, _: t < steps, step, (tf.constant(1), alpha0),
                           maximum_iterations=steps)
  return tf.reduce_logsumexp(alpha + end[None], axis=1)


def crf_path_score(emissions, tags, lengths, transitions, start, end):
  """The score [B] of the given tag paths."""
  transitions = tf.convert_to_tensor(transitions)  # A variable's gather_nd has no XLA kernel.
  steps = tf.shape(emissions)[1]
  mask = tf.sequence_mask(lengths, steps, dtype=emissions.dtype)
  unary = tf.reduce_sum(tf.gather(emissions, tags, batch_dims=2) * mask, axis=1)
  pairs = tf.gather_nd(transitions, tf.stack([tags[:, :-1], tags[:, 1:]], axis=-1))  # [B, T-1]
  binary = tf.reduce_sum(pairs * mask[:, 1:], axis=1)
  last = tf.gather(tags, tf.maximum(lengths - 1, 0), batch_dims=1)
  return unary + binary + tf.gather(start, tags[:, 0]) + tf.gather(end, last)


def crf_log_likelihood(emissions, tags, lengths, transitions, start, end):
  """log p(tags | emissions) per sentence [B]. Tag ids must lie in [0, C)."""
  return (crf_path_score(emissions, tags, lengths, transitions, start, end)
          - crf_log_norm(emissions, lengths, transitions, start, end))


# The score of a tag that contradicts a known label: exp() of it is 0 next to any real score,
# and it stays finite, so gradients through tf.where are defined.
_IMPOSSIBLE = -1e9


def crf_log_norms(emissions, tags, known, lengths, transitions, start, end):
  """(log Z, log Z_known), each [B]: the log-sum-exp of the scores of all tag paths, and of the
  paths that agree with the known tags (emissions of contradicting tags score _IMPOSSIBLE).

  Both come from one forward loop over the 2B rows [emissions; constrained emissions], so a
  step pays for one loop of small kernels, not two.

  Args:
    known: bool [B, T], True where tags[b, t] is a known label (ignored past the length).
  """
  num_tags = tf.shape(emissions)[2]
  agrees = tf.one_hot(tags, num_tags, on_value=True, off_value=False) | ~known[:, :, None]
  constrained = tf.where(agrees, emissions, _IMPOSSIBLE)
  both = crf_log_norm(tf.concat([emissions, constrained], 0), tf.concat([lengths, lengths], 0),
                      transitions, start, end)
  log_z, log_known = tf.split(both, 2)
  return log_z, log_known


def crf_marginal_log_likelihood(emissions, tags, known, lengths, transitions, start, end):
  """log p(tags at the known positions | emissions) per sentence [B], for partial labels:
  log Z_known - log Z (crf_log_norms). With every position known it equals
  crf_log_likelihood; with none it is 0."""
  log_z, log_known = crf_log_norms(emissions, tags, known, lengths, transitions, start, end)
  return log_known - log_z


def crf_decode(emissions, lengths, transitions, start, end):
  """The highest-scoring tag path per sentence (Viterbi): int32 [B, T], 0 at padding."""
  steps = tf.shape(emissions)[1]
  num_tags = tf.shape(emissions)[2]
  inputs = _time_major_array(emissions, steps)
  valid = tf.sequence_mask(lengths, steps)
  mask = _time_major_array(tf.cast(valid, emissions.dtype)[:, :, None], steps)
  identity = tf.range(num_tags)[None]

  def forward(t, alpha, pointers):
    scores = alpha[:, :, None] + transitions[None]
    best = tf.argmax(scores, axis=1, output_type=tf.int32)  # [B, C]
    new = tf.reduce_max(scores, axis=1) + inputs.read(t)
    keep = mask.read(t)
    pointer = tf.where(keep > 0, best, tf.broadcast_to(identity, tf.shape(best)))
    return t + 1, keep * new + (1.0 - keep) * alpha, pointers.write(t, pointer)

  pointers = tf.TensorArray(tf.int32, size=steps, element_shape=[None, None])
  pointers = pointers.write(0, tf.broadcast_to(identity, [tf.shape(emissions)[0], num_tags]))
  _, alpha, pointers = tf.while_loop(
      lambda t, *_: t < steps, forward, (tf.constant(1), start[None] + inputs.read(0), pointers),
      maximum_iterations=steps)
  last = tf.argmax(alpha + end[None], axis=1, output_type=tf.int32)  # [B]

  def backward(t, tag, path):
    path = path.write(t, tag)
    return t - 1, tf.gather(pointers.read(t), tag, batch_dims=1), path

  path = tf.TensorArray(tf.int32, size=steps, element_shape=[None])
  _, _, path = tf.while_loop(lambda t, *_: t >= 0, backward, (steps - 1, last, path),
                             maximum_iterations=steps)
  return tf.where(valid, tf.transpose(path.stack()), 0)


class CRF(tf.Module):
  """Transition, start and end scores of a linear-chain CRF over `num_tags` tags (init 0)."""

  def __init__(self, num_tags, name=None):
    super().__init__(name=name)
    self.num_tags = require_positive(f"{self.name} num_tags", num_tags)
    self.transitions = tf.Variable(tf.zeros([num_tags, num_tags]), name="transitions")
    self.start = tf.Variable(tf.zeros([num_tags]), name="start")
    self.end = tf.Variable(tf.zeros([num_tags]), name="end")

  def log_likelihood(self, emissions, tags, lengths):
    return crf_log_likelihood(emissions, tags, lengths, self.transitions, self.start, self.end)

  def marginal_log_likelihood(self, emissions, tags, known, lengths):
    return crf_marginal_log_likelihood(emissions, tags, known, lengths, self.transitions,
                                       self.start, self.end)

  def log_norms(self, emissions, tags, known, lengths):
    return crf_log_norms(emissions, tags, known, lengths, self.transitions, self.start,
                         self.end)

  def path_score(self, emissions, tags, lengths):
    return crf_path_score(emissions, tags, lengths, self.transitions, self.start, self.end)

  def decode(self, emissions, lengths):
    return crf_decode(emissions, lengths, self.transitions, self.start, self.end)
