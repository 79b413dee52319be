"""Analytic FLOP count of a tagger training step (multiply-adds count as 2 FLOPs).

Counts the matmuls and convolutions that dominate: char CNN, each trunk layer (and an
architecture's experts, columns or masks), the heads and a CRF head's forward algorithm, over
the padded batch (the work actually done). A training step is taken as 3x the forward pass
(backward costs about twice the forward), the usual estimate.
"""

from mtlcore.architectures import multiply_adds
from mtlcore.tagging.language_model import LM_TASK


def tagger_forward_flops(config, *, batch, seq_len, max_chars, num_tags, tasks, lm=None):
  """Forward FLOPs of the layers that `tasks` need (a POS-only step on a tagger whose POS
  head reads the first layer needs only that layer). The language-model task (LM_TASK in
  `tasks`, `lm` its LanguageModelConfig) reads the first layer; per token and direction a
  tanh layer and a softmax over vocab_size + 1 classes."""
  tokens = batch * seq_len
  flops = 2 * tokens * max_chars * config.char_width * config.char_dim * config.char_filters
  if LM_TASK in tasks:
    p = lm.projection_size
    flops += 2 * 2 * tokens * (config.hidden_size * p + p * (lm.vocab_size + 1))
    tasks = [t for t in tasks if t != LM_TASK]
  layers = min(max((config.layer_of(t) for t in tasks), default=1), config.shared_layers)
  size = config.word_dim + config.char_filters
  for _ in range(layers):
    h = config.hidden_size
    if config.trunk == "bilstm":
      flops += 2 * tokens * (size * 8 * h + h * 8 * h)
    else:
      flops += 2 * tokens * config.conv_width * size * config.output_size
    size = config.output_size
  if any(config.reads_mixture(t) for t in tasks):
    # The architecture on the top shared layer computes every mixed task's path, whichever
    # tasks the step trains (mtlcore.architectures.multiply_adds).
    mixed = sum(config.reads_mixture(t) for t in num_tags)
    flops += 2 * tokens * multiply_adds(config.architecture, config.output_size, mixed,
                                        config.mixture_sizes())
  for task in tasks:
    flops += 2 * tokens * config.size_read_by(task) * num_tags[task]
    if task in config.crf:
      # The forward algorithm, run twice (full and partial-label likelihood): per token a
      # [K, K] add and a reduction over K.
      flops += 2 * 2 * tokens * num_tags[task] ** 2
  return flops


def tagger_train_flops(config, **kwargs):
  return 3 * tagger_forward_flops(config, **kwargs)
