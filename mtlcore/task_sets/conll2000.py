"""The CoNLL-2000 task set: POS tagging and chunking with the tagger of mtlcore.networks.tagger.

Data: train and test files found by mtlcore.data.conll2000 (a directory, $MTL_DATA_DIR, or a
verified download); dev is the end of the training file. The vocabularies are built from the
training split once and kept in the model directory's assets (`vocab.json`), so a resumed run,
mtl-eval and the export use the ids the checkpoint was trained with.

Options: the fields of TaggerConfig (trunk, word_dim, hidden_size, ...) and `buckets` (the
pipeline's padded lengths).
"""

import dataclasses
import os

from mtlcore import export, tagging, task_set
from mtlcore.data import conll2000, pipeline
from mtlcore.data.vocab import Featurizer, Vocabularies
from mtlcore.errors import ConfigError
from mtlcore.networks import tagger

VOCABULARY_FILE = "vocab.json"


class Conll2000TaskSet(task_set.TaskSet):
  """POS tagging ("pos") and chunking ("chunk"), scored by accuracy and conlleval F1."""

  task_names = ("pos", "chunk")
  defaults = {"batch_size": 32, "learning_rate": 2e-3, "epochs": 24.0, "clip_norm": 5.0,
              "eval_every": 1000, "lr_decay_start": 0.33, "average_decay": 0.0}
  selection = ("chunk/f1", "pos/accuracy")
  splits = ("dev", "test")

  def __init__(self, options, *, eval_batch_size=128):
    fields = [f.name for f in dataclasses.fields(tagger.TaggerConfig)]
    task_set.reject_unknown_options("conll2000", options, (*fields, "buckets"))
    options = dict(options)
    self.buckets = pipeline.check_buckets(options.pop("buckets", pipeline.DEFAULT_BUCKETS))
    self.config = tagger.TaggerConfig(**options)
    self.eval_batch_size = eval_batch_size
    self.vocabularies = self.featurizer = None
    self._predictor = None

  def options(self):
    return {**dataclasses.asdict(self.config), "buckets": list(self.buckets)}

  def load_data(self, data_dir):
    return conll2000.load_splits(data_dir)

  def _vocabularies(self, assets_dir, data):
    """The vocabularies kept in assets_dir, or new ones built from the training split."""
    path = os.path.join(assets_dir, VOCABULARY_FILE)
    if os.path.exists(path):
      return Vocabularies.load(path)
    if data is None:
      raise ConfigError(f"{path} does not exist; is this a model directory written by "
                        f"mtl-train?")
    vocabularies = Vocabularies.build(data.train)
    vocabularies.save(path)
    return vocabularies

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    return self.build_model_for(tasks, self._vocabularies(assets_dir, data), seed=seed)

  def build_model_for(self, tasks, vocabularies, *, seed):
    """The tagger for `tasks` over given vocabularies (mtl-bench uses synthetic ones)."""
    self.vocabularies, self.featurizer = vocabularies, Featurizer(vocabularies)
    return tagger.build_tagger(
        self.config, num_words=self.featurizer.num_words, num_chars=self.featurizer.num_chars,
        num_tags={t: len(vocabularies.tags[t]) for t in tasks}, seed=seed)

  def make_tasks(self, model, tasks):
    return tagger.tagging_tasks(model, tasks)

  def _stream(self, data, tasks, batch_size, seed):
    dataset = pipeline.training_dataset(
        data.train, featurizer=self.featurizer, vocabularies=self.vocabularies, tasks=tasks,
        batch_size=batch_size, seed=seed, buckets=self.buckets)
    pieces = pipeline.split_long(data.train, self.buckets[-1])
    return task_set.Stream(dataset, steps_per_epoch=-(-len(pieces) // batch_size))

  def joint_dataset(self, data, tasks, *, batch_size, seed):
    return self._stream(data, tuple(tasks), batch_size, seed)

  def task_dataset(self, data, task, *, batch_size, seed):
    return self._stream(data, (task,), batch_size, seed)

  def _predict(self, model, data, tasks, split):
    """(gold sentences of `split`, {task: predicted tags per sentence})."""
    if self._predictor is None or self._predictor.model is not model:
      self._predictor = tagging.TagPredictor(model, self.featurizer, self.vocabularies,
                                             tasks=tasks, batch_size=self.eval_batch_size,
                                             buckets=self.buckets)
    sentences = {"dev": data.dev, "test": data.test}[split]
    return sentences, self._predictor.predict(sentences)

  def evaluate(self, model, data, tasks, split):
    return tagging.score(*self._predict(model, data, tasks, split))

  def write_predictions(self, model, data, tasks, split, path):
    """conlleval's input: `word gold pred` per trained task (POS first), a blank line between
    sentences."""
    sentences, predictions = self._predict(model, data, tasks, split)
    gold = {"pos": lambda s: s.pos, "chunk": lambda s: s.chunks}
    order = [t for t in self.task_names if t in tasks]
    with open(path, "w", encoding="utf-8") as f:
      for i, s in enumerate(sentences):
        columns = [s.words]
        for t in order:
          columns += [gold[t](s), predictions[t][i]]
        f.writelines(" ".join(row) + "\n" for row in zip(*columns))
        f.write("\n")

  def export(self, model, tasks, export_dir):
    return export.export_tagger(export_dir, model, self.featurizer, self.vocabularies, tasks)
