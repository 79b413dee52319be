"""The tagger's auxiliary language-model task (Rei 2017): the text teaches the trunk.

From the *first* BiLSTM layer, its forward direction at token t predicts word t+1 and its
backward direction word t-1, on the training sentences themselves (no other data). The first
layer, because a deeper forward state has already seen the future through the first layer's
backward half: that task would read its own targets and teach nothing. On the conv trunk the
first layer is then directional (TaggerConfig.directional_first_layer): half its filters see
tokens t-w+1..t, half t..t+w-1, and the halves play the two directions' parts (a centred window
sees both neighbours, so it cannot).

Vocabulary: the `vocab_size` most frequent normalised training words (mtlcore.tagging.vocab
.normalize_word; ties by the word), kept as the task's tag list, so a word's class is its tag
id and any other word is the unknown class `vocab_size` (the id the tag vocabulary gives an
unseen tag). A batch's labels for the task are the class of each token, int32 [B, T]; the loss
shifts them. Padding and sentence ends (and the ends of the pieces long sentences are split
into) have no target.

Per token and direction the head is a tanh layer (H -> projection_size) and a softmax over
vocab_size + 1 classes: 2 x (H x projection + projection x (vocab_size + 1)) forward FLOPs. The
loss is `weight` x the mean cross-entropy over the predicted positions of both directions; the
unweighted mean is logged as lm/cross_entropy (nats per word). Evaluation and the export run
the tagging heads only, so the task costs nothing after training.
"""

import collections
import dataclasses

import tensorflow as tf

from mtlcore import losses
from mtlcore.tagging.vocab import normalize_word
from mtlcore.errors import ConfigError
from mtlcore.layers import Linear
from mtlcore.model import TaskHead
from mtlcore.tasks import Ratio

LM_TASK = "lm"


@dataclasses.dataclass(frozen=True)
class LanguageModelConfig:
  """vocab_size: words predicted (plus one unknown class); projection_size: the tanh layer
  between a direction's state and its softmax; weight: the loss's multiplier (> 0)."""
  vocab_size: int = 2000
  projection_size: int = 64
  weight: float = 0.1

  def __post_init__(self):
    for name in ("vocab_size", "projection_size"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ConfigError(f"--lm_{name.split('_')[0]} must be a positive integer, got {value!r}.")
    if isinstance(self.weight, bool) or not isinstance(self.weight, (int, float)) or not (
        0 < self.weight < float("inf")):
      raise ConfigError(f"--lm_weight must be a positive number, got {self.weight!r}.")


def frequent_words(sentences, size):
  """The `size` most frequent normalised words of `sentences` (most frequent first; ties in
  word order), as a tuple: the LM task's tag list."""
  counts = collections.Counter(normalize_word(w) for s in sentences for w in s.words)
  ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
  return tuple(word for word, _ in ranked[:size])


def with_word_labels(sentences):
  """The sentences, each with a label column LM_TASK holding its normalised words (the tag
  vocabulary turns them into class ids)."""
  return [dataclasses.replace(s, tags={**s.tags, LM_TASK: tuple(map(normalize_word, s.words))})
          for s in sentences]


def shifted_targets(labels, lengths):
  """(targets int32 [B, T, 2], valid bool [B, T, 2]) from word classes [B, T]: direction 0
  (forward) at t targets the class at t+1, valid when t+1 < length; direction 1 (backward) at
  t the class at t-1, valid when 1 <= t < length."""
  labels = tf.cast(labels, tf.int32)
  pad = tf.zeros_like(labels[:, :1])
  targets = tf.stack([tf.concat([labels[:, 1:], pad], axis=1),
                      tf.concat([pad, labels[:, :-1]], axis=1)], axis=2)
  positions = tf.range(tf.shape(labels)[1])[None, :]
  lengths = tf.cast(lengths, tf.int32)[:, None]
  valid = tf.stack([positions + 1 < lengths, (positions >= 1) & (positions < lengths)], axis=2)
  return targets, valid


class LanguageModelHead(TaskHead):
  """First-layer states [B, T, 2H] (forward half, then backward) -> logits [2, B, T, V + 1]:
  direction 0 scores the next word, direction 1 the previous one.

  Direction first, so that both directions run as one batched matmul per layer and the
  logits come out in place (no [B, T, 2, V + 1] stack to copy), and each output bias rides in
  its matmul as one more weight row (its gradient is then a row of the weight gradient's matmul
  instead of a separate sum over B x T rows, which XLA:CPU ran as a slow reduce-window). The
  same function as two Linear layers per direction; the default CoNLL-2000 run's step went
  from 51 to 46 ms (2-core CPU, idle, back to back).
  """

  def __init__(self, state_size, num_words, config, *, seed, reads="layer1", name=None):
    """state_size: H, the units of one direction; num_words: V, the words the task predicts
    (its tag list; V + 1 classes with the unknown one)."""
    super().__init__(reads=reads, name=name)
    self.config = config
    self.num_classes = num_words + 1
    p = config.projection_size
    self.projections = [Linear(state_size, p, seed=seed + d, name=f"projection_{d}")
                        for d in range(2)]
    self.outputs = [Linear(p, self.num_classes, seed=seed + 2 + d, name=f"output_{d}")
                    for d in range(2)]

  def __call__(self, representation, features, *, training, seed):
    del features, training, seed
    dtype = representation.dtype
    shape = tf.shape(representation)
    batch, steps = shape[0], shape[1]
    state_size = representation.shape[-1] // 2
    # [2, B*T, H]: direction d's half of every token.
    states = tf.transpose(tf.reshape(representation, [batch * steps, 2, state_size]), [1, 0, 2])
    kernel = tf.cast(tf.stack([p.w for p in self.projections]), dtype)  # [2, H, P]
    bias = tf.cast(tf.stack([p.b for p in self.projections]), dtype)  # [2, P]
    hidden = tf.tanh(tf.einsum("znh,zhp->znp", states, kernel) + bias[:, None, :])
    hidden = tf.concat([hidden, tf.ones_like(hidden[..., :1])], axis=-1)  # [2, B*T, P + 1]
    output = tf.cast(tf.stack([tf.concat([o.w, o.b[None]], axis=0) for o in self.outputs]),
                     dtype)  # [2, P + 1, V + 1]: the bias is the last row
    logits = tf.einsum("znp,zpv->znv", hidden, output)
    return tf.reshape(logits, [2, batch, steps, self.num_classes])

  def token_losses(self, labels, logits, features):
    """(cross-entropy float32 [B, T, 2], 0 where there is no target; valid bool [B, T, 2])
    from logits [2, B, T, V + 1]."""
    targets, valid = shifted_targets(labels, features["length"])
    targets = tf.clip_by_value(tf.transpose(targets, [2, 0, 1]), 0, self.num_classes - 1)
    entropy = losses.sparse_cross_entropy(targets, logits)  # [2, B, T]
    return tf.where(valid, tf.transpose(entropy, [1, 2, 0]), 0.0), valid

  def _cross_entropy(self, labels, logits, features):
    entropy, valid = self.token_losses(labels, logits, features)
    return Ratio(tf.reduce_sum(entropy), tf.reduce_sum(tf.cast(valid, tf.float32)))

  def loss(self, labels, logits, features):
    """Ratio(weight x cross-entropy summed over predicted words, their number)."""
    total, count = self._cross_entropy(labels, logits, features)
    return Ratio(self.config.weight * total, count)

  def loss_count(self, labels, features):
    """The loss's count from the batch alone: words with a target (next or previous word)."""
    _, valid = shifted_targets(labels, features["length"])
    return tf.reduce_sum(tf.cast(valid, tf.float32))

  def metrics(self):
    return {"cross_entropy": self._cross_entropy}
