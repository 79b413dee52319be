"""The sequence tagger: words and characters in, one tag distribution per token per task.

Trunk: a word embedding (normalised words) concatenated with character features (a char CNN
max-pooled over each word), then a stack of masked BiLSTM layers (or, with trunk="conv",
1-D convolution layers, faster on CPU). It exposes every layer's output as a representation,
"layer1" (the first) to "layerN" (the top). Each task's head reads the top layer unless
`reads` names another (Søgaard & Goldberg 2016: low-level tasks such as POS supervised at
lower layers), and is a per-token softmax or, for the tasks in `crf`, a linear-chain CRF.

With `architecture` other than "hard" the top layer is task-specific: layers 1 to N-1 stay
shared BiLSTM or conv layers, and the architecture (mtlcore.architectures: moe, mmoe, cgc, ple,
cross_stitch, mtan, dselect_k) maps each token's state in layer N-1 to one representation per
task that reads the top, named by the task. Its experts, columns and masks are position-wise
ReLU layers of `expert_size` units (each token on its own; the context comes from the shared
layers below), not whole BiLSTMs: E experts cost E dense layers per token. Each task's gates,
experts, last cross-stitch row or masks are its own part of the trunk (mtlcore.ownership).

Features: {"words": int32 [B, T], "chars": int32 [B, T, C], "length": int32 [B]}.
Head outputs: logits float32 [B, T, num_tags].
"""

import dataclasses
from collections.abc import Mapping

import tensorflow as tf

from mtlcore import losses
from mtlcore.architectures import MixtureSizes, task_mixture
from mtlcore.choices import ARCHITECTURES
from mtlcore.errors import ConfigError, require_positive, require_probability
from mtlcore.layers import BiLSTM, Conv1D, Dropout, Embed, Linear
from mtlcore.tagging.vocab import PAD, UNK
from mtlcore.layers.conv import DirectionalConv1D
from mtlcore.tagging.crf import CRF
from mtlcore.tagging.options import TRUNKS
from mtlcore.layers.dropout import hash_uniform
from mtlcore.model import MultiTaskModel, SharedTrunk, TaskHead
from mtlcore.tasks import Ratio, Task

_WORD_DROPOUT_STREAM = 1000  # Dropout sites use streams 0..num_layers.


@dataclasses.dataclass(frozen=True)
class TaggerConfig:
  """Sizes of the tagger.

  Attributes:
    trunk: "bilstm" or "conv".
    word_dim: word embedding size.
    char_dim: character embedding size.
    char_filters: char CNN filters (the size of a word's character features).
    char_width: char CNN window, in characters.
    hidden_size: BiLSTM units per direction; the conv trunk uses 2 * hidden_size filters so
      both trunks give representations of the same size.
    num_layers: trunk layers (>= 2, so that a task can read a lower layer than the top).
    conv_width: window of the conv trunk's layers, in tokens.
    directional_first_layer: conv trunk: the first layer's filters are half causal (the output
      at t sees tokens t-w+1..t) and half anti-causal (t..t+w-1), like a BiLSTM's two
      directions (mtlcore.layers.conv.DirectionalConv1D); the language-model task needs it.
    dropout: dropout rate on the embeddings and after every trunk layer.
    word_dropout: in training, each word id is replaced by the unknown-word id with this
      probability, so the unknown-word embedding learns to stand for rare and unseen words.
    crf: tasks whose head is a linear-chain CRF (trained on the sentence log-likelihood,
      decoded with Viterbi) instead of a per-token softmax.
    reads: task -> the trunk layer (1 to num_layers) its head reads; other tasks read the top.
    architecture: "hard" (every layer shared) or a name of mtlcore.architectures: the top
      layer becomes that architecture over layer num_layers - 1's states.
    experts: moe, mmoe, dselect_k: the number of experts (dselect_k: a power of two).
    expert_size: units of each expert (moe, mmoe, cgc, ple, dselect_k), column layer
      (cross_stitch) or attention layer (mtan); 0: the trunk's output size, 2 * hidden_size.
    shared_experts, task_experts: cgc, ple: shared and per-task experts per level.
    levels: ple: extraction levels.
    mixture_layers: cross_stitch: layers of each column; mtan: attended layers.
    self_weight: cross_stitch: a unit's initial weight of a task's own column.
    cross_task_gradients: ple: the shared gates pass every task's loss to the other tasks'
      lower experts, as in the paper.
    selected_experts: dselect_k: k, the most experts each task's gate weighs on a token.
  """
  trunk: str = "bilstm"
  word_dim: int = 100
  char_dim: int = 32
  char_filters: int = 64
  char_width: int = 3
  hidden_size: int = 128
  num_layers: int = 2
  conv_width: int = 5
  directional_first_layer: bool = False
  dropout: float = 0.5
  word_dropout: float = 0.1
  crf: tuple = ()
  reads: Mapping = dataclasses.field(default_factory=dict)
  architecture: str = "hard"
  experts: int = 4
  expert_size: int = 0
  shared_experts: int = 1
  task_experts: int = 1
  levels: int = 2
  mixture_layers: int = 1
  self_weight: float = 0.9
  cross_task_gradients: bool = False
  selected_experts: int = 2

  def __post_init__(self):
    if self.trunk not in TRUNKS:
      raise ConfigError(f"trunk must be one of {TRUNKS}, got {self.trunk!r}.")
    if self.architecture not in ARCHITECTURES:
      raise ConfigError(f"architecture must be one of {ARCHITECTURES}, got "
                        f"{self.architecture!r}.")
    if isinstance(self.expert_size, bool) or not isinstance(self.expert_size, int) or \
        self.expert_size < 0:
      raise ConfigError(f"expert_size must be a non-negative integer, got "
                        f"{self.expert_size!r}.")
    for name in ("word_dim", "char_dim", "char_filters", "char_width", "hidden_size",
                 "conv_width"):
      require_positive(name, getattr(self, name))
    if require_positive("num_layers", self.num_layers) < 2:
      raise ConfigError(f"num_layers must be at least 2, got {self.num_layers}.")
    if self.directional_first_layer and self.trunk != "conv":
      raise ConfigError("directional_first_layer applies to the conv trunk only.")
    require_probability("dropout", self.dropout)
    require_probability("word_dropout", self.word_dropout)
    object.__setattr__(self, "crf", tuple(self.crf))
    object.__setattr__(self, "reads", dict(self.reads))
    for task, layer in self.reads.items():
      if not isinstance(layer, int) or not 1 <= layer <= self.num_layers:
        raise ConfigError(f"reads: task {task!r} must read a layer from 1 to num_layers="
                          f"{self.num_layers}, got {layer!r}.")
    self.mixture_sizes().check(self.architecture)  # Checks the architecture's sizes.

  def layer_of(self, task):
    """The trunk layer (1 = first) `task`'s head reads."""
    return self.reads.get(task, self.num_layers)

  def reads_mixture(self, task):
    """Whether `task` reads its own representation of the architecture (the top layer under
    an architecture other than "hard")."""
    return self.architecture != "hard" and self.layer_of(task) == self.num_layers

  def layer_read_by(self, task):
    """The name of the representation `task`'s head reads: "layerN", or the task's name
    when it reads its own representation of the architecture."""
    return task if self.reads_mixture(task) else f"layer{self.layer_of(task)}"

  def size_read_by(self, task):
    """The last-axis size of the representation `task`'s head reads."""
    return self.mixture_sizes().output_size(self.architecture) if self.reads_mixture(task) \
        else self.output_size

  def mixture_sizes(self):
    """The architecture's MixtureSizes (its experts', columns' and masks' units:
    expert_size, or the trunk's output size)."""
    size = self.expert_size or self.output_size
    try:
      return MixtureSizes(experts=self.experts, expert_size=size,
                          shared_experts=self.shared_experts, task_experts=self.task_experts,
                          levels=self.levels, layers=self.mixture_layers, hidden_size=size,
                          self_weight=self.self_weight,
                          cross_task_gradients=self.cross_task_gradients,
                          selected_experts=self.selected_experts)
    except ConfigError as e:
      raise ConfigError(str(e).replace("layers must", "mixture_layers must", 1)) from None

  @property
  def shared_layers(self):
    """The BiLSTM or conv layers: all num_layers under "hard", else num_layers - 1."""
    return self.num_layers - (self.architecture != "hard")

  @property
  def output_size(self):
    return 2 * self.hidden_size


def sequence_mask(features):
  """float32 [B, T]: 1.0 on real tokens."""
  return tf.sequence_mask(features["length"], tf.shape(features["words"])[1], dtype=tf.float32)


class CharFeatures(tf.Module):
  """chars int32 [B, T, C] (0 = padding) -> [B, T, filters]: char CNN, max over characters."""

  def __init__(self, num_chars, char_dim, filters, width, *, seed, name=None):
    super().__init__(name=name)
    self.embed = Embed(num_chars, char_dim, seed=seed, name="char_embed")
    self.conv = Conv1D(char_dim, filters, width, seed=seed + 1, name="char_conv")
    self.filters = filters

  def __call__(self, chars, dtype=tf.float32):
    shape = tf.shape(chars)
    flat = tf.reshape(chars, [-1, shape[2]])  # [B*T, C]
    mask = tf.cast(flat > 0, dtype)
    encoded = self.conv(self.embed(flat, dtype), mask)  # [B*T, C, F], ReLU: >= 0, 0 at padding.
    return tf.reshape(tf.reduce_max(encoded, axis=1), [shape[0], shape[1], self.filters])


class TaggerTrunk(SharedTrunk):
  """Embeddings + char CNN + a stack of BiLSTM or conv layers -> {"layer1", ..., "layerN"};
  under an architecture, {"layer1", ..., "layer{N-1}"} and {task: its representation
  [B, T, expert_size]} for each of `mixture_tasks`."""

  def __init__(self, config, *, num_words, num_chars, seed, mixture_tasks=(), name=None):
    super().__init__(name=name)
    self.config = config
    self.word_embed = Embed(num_words, config.word_dim, seed=seed, name="word_embed")
    self.char_features = CharFeatures(num_chars, config.char_dim, config.char_filters,
                                      config.char_width, seed=seed + 10, name="char_features")
    size = config.word_dim + config.char_filters
    self.layers = []
    for i in range(config.shared_layers):
      if config.trunk == "bilstm":
        layer = BiLSTM(size, config.hidden_size, seed=seed + 100 + i, name=f"bilstm_{i}")
      else:
        conv = DirectionalConv1D if i == 0 and config.directional_first_layer else Conv1D
        layer = conv(size, config.output_size, config.conv_width, seed=seed + 100 + i,
                     name=f"conv_{i}")
      self.layers.append(layer)
      size = config.output_size
    self.dropouts = [Dropout(config.dropout, site=i, name=f"dropout_{i}")
                     for i in range(config.num_layers + 1)]
    self.output_sizes = {f"layer{i + 1}": config.output_size
                         for i in range(config.shared_layers)}
    self.mixture = None
    if config.architecture != "hard":
      mixture_tasks = tuple(mixture_tasks)
      clash = [t for t in mixture_tasks if t in self.output_sizes]
      if clash:
        raise ConfigError(f"task(s) {clash} have the name of a trunk layer; rename them.")
      if not mixture_tasks:
        raise ConfigError(f"architecture {config.architecture!r} replaces the top layer, and "
                          f"no task reads it (reads sends every task lower).")
      sizes = config.mixture_sizes()
      self.mixture = task_mixture(config.architecture, config.output_size, mixture_tasks,
                                  sizes, seed=seed + 500, name="mixture")
      self.output_sizes.update(
          {t: sizes.output_size(config.architecture) for t in mixture_tasks})
    elif mixture_tasks:
      raise ConfigError("mixture_tasks are for an architecture other than 'hard'.")

  def variables_of(self, representation):
    """"layerN" -> the variables of the N-th BiLSTM or conv layer; a task's representation
    of the architecture -> the top shared layer's (the last layer every task shares)."""
    names = [f"layer{i + 1}" for i in range(len(self.layers))]
    layer = self.layers[names.index(representation)] if representation in names \
        else self.layers[-1]
    return layer.trainable_variables

  def task_parts(self):
    """Each task's gates, experts, last cross-stitch row or masks (none under "hard")."""
    return self.mixture.task_parts() if self.mixture is not None else {}

  def gate_widths(self):
    return self.mixture.gate_widths() if self.mixture is not None else {}

  def gate_columns(self):
    return self.mixture.gate_columns() if self.mixture is not None else {}

  def gate_weights(self, features, representations=None):
    """{gate name: its weights [N, width]} over the batch's N real tokens; the gates
    read the top shared layer, taken from `representations` (this trunk's inference-mode
    outputs on the batch) when given, else computed again."""
    if not self.gate_widths():
      return {}
    top = (representations[f"layer{len(self.layers)}"] if representations is not None
           else self._shared(features, training=False, seed=None)[-1])
    mask = sequence_mask(features) > 0
    return {name: tf.boolean_mask(w, mask)
            for name, w in self.mixture.gate_weights({"x": top}).items()}

  def __call__(self, features, *, training, seed):
    return self._call(features, training=training, seed=seed, with_gates=False)[0]

  def call_with_gates(self, features, *, training, seed):
    """The representations and the architecture's gates over the real tokens (as
    `gate_weights`) from one pass: the gates its layers computed for the mixing."""
    return self._call(features, training=training, seed=seed, with_gates=True)

  def _call(self, features, *, training, seed, with_gates):
    outputs = self._shared(features, training=training, seed=seed)
    representations = {f"layer{i + 1}": x for i, x in enumerate(outputs)}
    gates = {}
    if self.mixture is not None:
      drop = self.dropouts[self.config.num_layers]
      if with_gates:
        mixed, gates = self.mixture.call_with_gates({"x": outputs[-1]}, training=training,
                                                    seed=seed)
        mask = sequence_mask(features) > 0
        gates = {name: tf.boolean_mask(w, mask) for name, w in gates.items()}
      else:
        mixed = self.mixture({"x": outputs[-1]}, training=training, seed=seed)
      representations.update(
          {t: drop(x, seed=seed, training=training) for t, x in mixed.items()})
    return representations, gates

  def _shared(self, features, *, training, seed):
    """[B, T, output_size] of each shared BiLSTM or conv layer, after its dropout."""
    mask = sequence_mask(features)
    words = features["words"]
    if training and self.config.word_dropout > 0:
      drop = hash_uniform(tf.shape(words), seed, stream=_WORD_DROPOUT_STREAM)
      words = tf.where((drop < self.config.word_dropout) & (words > PAD), UNK, words)
    dtype = self.compute_dtype  # mtlcore.precision: the variables stay float32.
    x = tf.concat([self.word_embed(words, dtype),
                   self.char_features(features["chars"], dtype)], axis=-1)
    x = self.dropouts[0](x, seed=seed, training=training)
    outputs = []
    for layer, drop in zip(self.layers, self.dropouts[1:]):
      x = layer(x, features["length"]) if self.config.trunk == "bilstm" else layer(x, mask)
      x = drop(x, seed=seed, training=training)
      outputs.append(x)
    return outputs


class TokenClassifierHead(TaskHead):
  """representation [B, T, D] -> logits [B, T, num_tags]; decodes by per-token argmax."""

  def __init__(self, input_size, num_tags, *, reads, seed, name=None):
    super().__init__(reads=reads, name=name)
    self.linear = Linear(input_size, num_tags, seed=seed, name="linear")
    self.num_tags = num_tags

  def __call__(self, representation, features, *, training, seed):
    return self.linear(representation)

  def decode(self, logits, lengths):
    """Tag ids int32 [B, T] (0 at padding)."""
    ids = tf.argmax(logits, axis=-1, output_type=tf.int32)
    return tf.where(tf.sequence_mask(lengths, tf.shape(ids)[1]), ids, 0)

  def loss(self, labels, logits, features):
    """Ratio(softmax cross-entropy summed over real tokens, their number); tags unseen in
    training are left out of both."""
    return losses.masked_sparse_cross_entropy(labels, logits, sequence_mask(features))

  def loss_count(self, labels, features):
    """The loss's count from the batch alone: real tokens whose tag id is in [0, num_tags)
    (the CRF's loss counts the same)."""
    return losses.labelled_count(labels, sequence_mask(features), self.num_tags)

  def metrics(self):
    def accuracy(labels, logits, features):
      """Per-token argmax accuracy over the labelled tokens, in percent (the unit of the
      held-out TASK/accuracy, which scores the decoded tags)."""
      correct = losses.masked_accuracy(labels, logits, sequence_mask(features))
      return Ratio(100.0 * correct.total, correct.count)
    return {"accuracy": accuracy}


class CRFTagHead(TokenClassifierHead):
  """Emission scores [B, T, num_tags] from a linear map, plus a linear-chain CRF over them.

  Trained on the negative log-likelihood of the gold tag path, per token; decoded with
  Viterbi. Tag ids outside [0, num_tags) (never seen in training) are clipped in the loss.
  """

  def __init__(self, input_size, num_tags, *, reads, seed, name=None):
    super().__init__(input_size, num_tags, reads=reads, seed=seed, name=name)
    self.crf = CRF(num_tags, name="crf")

  def decode(self, logits, lengths):
    return self.crf.decode(logits, lengths)

  def loss(self, labels, logits, features):
    """Ratio(negative log-likelihood of the known tags summed over sentences, labelled tokens).

    A fully labelled sentence scores its gold path; a partly labelled one (missing labels < 0,
    or tags unseen in training) the marginal likelihood of every path through its known tags;
    one with no label adds nothing. log Z and the constrained sum come from one forward loop
    (crf_log_norms); both numerators are computed and one is selected, since XLA does not
    compile a tf.cond around the forward algorithm's TensorArrays.
    """
    mask = tf.sequence_mask(features["length"], tf.shape(labels)[1])
    labels = tf.cast(labels, tf.int32)
    known = (labels >= 0) & (labels < self.num_tags) & mask
    labels = tf.clip_by_value(labels, 0, self.num_tags - 1)
    lengths = features["length"]
    full = tf.reduce_all(known | ~mask, axis=1)
    some = tf.reduce_any(known, axis=1)
    log_z, log_known = self.crf.log_norms(logits, labels, known, lengths)
    numerator = tf.where(full, self.crf.path_score(logits, labels, lengths), log_known)
    log_likelihood = numerator - log_z
    return Ratio(-tf.reduce_sum(tf.where(some, log_likelihood, 0.0)),
                 tf.reduce_sum(tf.cast(known, tf.float32)))

  def metrics(self):
    return {}


def build_tagger(config, *, num_words, num_chars, num_tags, seed, extra_heads=None):
  """A MultiTaskModel with the tagger trunk and one softmax or CRF head per task.

  Args:
    config: TaggerConfig.
    num_words, num_chars: vocabulary sizes, including padding and unknown.
    num_tags: task name -> number of tags; the model has a head for each.
    seed: int; all initial weights are a function of it (head i, in sorted task order, of
      seed + 1000 + i).
    extra_heads: task name -> a TaskHead of another kind (e.g. the language-model head of
      mtlcore.tagging.language_model), added as it is.

  Under an architecture other than "hard", the trunk mixes for every head that reads a
  representation named by its task (config.layer_read_by).
  """
  heads = {}
  for i, (task, n) in enumerate(sorted(num_tags.items())):
    head_class = CRFTagHead if task in config.crf else TokenClassifierHead
    heads[task] = head_class(config.size_read_by(task), n, reads=config.layer_read_by(task),
                             seed=seed + 1000 + i, name=f"{task}_head")
  heads.update(extra_heads or {})
  # The architecture's tasks: those whose head reads a representation named by the task.
  mixed = [t for t, head in heads.items() if config.architecture != "hard" and head.reads == t]
  trunk = TaggerTrunk(config, num_words=num_words, num_chars=num_chars, seed=seed,
                      mixture_tasks=mixed, name="trunk")
  return MultiTaskModel(trunk, heads, name="tagger")


def count_tokens(labels, features):
  """The unit of a tagging task: real tokens with a label (missing labels are < 0)."""
  mask = tf.sequence_mask(features["length"], tf.shape(labels)[1])
  return tf.reduce_sum(tf.cast(mask & (labels >= 0), tf.float32))


def tagging_tasks(model, names):
  """One Task per name, whose loss and metrics are its head's, counting tokens."""
  return [Task(n, loss=model.heads[n].loss, metrics=model.heads[n].metrics(), units="tokens",
               count_units=count_tokens, loss_count=model.heads[n].loss_count) for n in names]
