"""The baseline a user would pick instead: the same tagger in Keras 3, trained by model.fit.

Same sizes as mtlcore.tagging.tagger with a softmax chunk head: word embedding, a char CNN
max-pooled over each word, two BiLSTM (or conv) layers with dropout, and a dense head per
task (on the layer TaggerConfig.reads names), two sparse cross-entropy losses, Adam with
the same learning rate and global gradient clipping. Padding is masked via mask_zero.
"""

import time

import keras
import numpy as np

from mtlcore.tagging.tagger import TaggerConfig


def build_keras_tagger(config: TaggerConfig, *, num_words, num_chars, num_tags, max_chars,
                       tasks=("pos", "chunk"), learning_rate=2e-3, clip_norm=5.0):
  words = keras.Input(shape=(None,), dtype="int32", name="words")
  chars = keras.Input(shape=(None, max_chars), dtype="int32", name="chars")
  word_vectors = keras.layers.Embedding(num_words, config.word_dim, mask_zero=True)(words)
  char_vectors = keras.layers.Embedding(num_chars, config.char_dim)(chars)
  char_conv = keras.layers.TimeDistributed(keras.layers.Conv1D(
      config.char_filters, config.char_width, padding="same", activation="relu"))(char_vectors)
  char_features = keras.layers.TimeDistributed(keras.layers.GlobalMaxPooling1D())(char_conv)
  x = keras.layers.Concatenate()([word_vectors, char_features])
  x = keras.layers.Dropout(config.dropout)(x)
  layers = []
  for _ in range(config.num_layers):
    if config.trunk == "bilstm":
      x = keras.layers.Bidirectional(keras.layers.LSTM(config.hidden_size,
                                                       return_sequences=True))(x)
    else:
      x = keras.layers.Conv1D(config.output_size, config.conv_width, padding="same",
                              activation="relu")(x)
    x = keras.layers.Dropout(config.dropout)(x)
    layers.append(x)
  outputs = {}
  for task in tasks:
    reads = layers[config.layer_of(task) - 1]
    outputs[task] = keras.layers.Dense(num_tags[task], name=task)(reads)
  model = keras.Model(inputs={"words": words, "chars": chars}, outputs=outputs)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate, global_clipnorm=clip_norm),
                loss={t: keras.losses.SparseCategoricalCrossentropy(from_logits=True)
                      for t in tasks})
  return model


class StepTimer(keras.callbacks.Callback):
  """Wall time of every training batch, from Keras' own batch hooks."""

  def __init__(self):
    super().__init__()
    self.times = []
    self._start = None

  def on_train_batch_begin(self, batch, logs=None):
    self._start = time.perf_counter()

  def on_train_batch_end(self, batch, logs=None):
    self.times.append(time.perf_counter() - self._start)


def keras_steps(model, dataset):
  """`steps(n)`: per-step seconds [n] of one model.fit call over n batches of `dataset`."""
  def steps(n):
    timer = StepTimer()
    model.fit(dataset, steps_per_epoch=n, epochs=1, verbose=0, callbacks=[timer])
    return np.array(timer.times)
  return steps


def keras_step_times(model, dataset, *, warmup, steps):
  """Per-step seconds of model.fit over `steps` batches after `warmup` batches."""
  run = keras_steps(model, dataset)
  run(warmup)
  return run(steps)
