"""Task sets: what `mtl-train --task_set=NAME` trains, built from plain arguments.

A task set supplies the model, its tasks, the training data for each mode and, where it has
held-out data, an evaluation function. The binaries turn flags into these arguments.
"""

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence

import tensorflow as tf

from mtlcore import tagging
from mtlcore.data import pipeline
from mtlcore.data import toy as toy_data
from mtlcore.data.vocab import Featurizer, Vocabularies
from mtlcore.errors import ConfigError
from mtlcore.model import MultiTaskModel
from mtlcore.networks import tagger
from mtlcore.networks import toy as toy_network
from mtlcore.tasks import Task
from trainers import run_files


@dataclasses.dataclass
class TaskSet:
  """Everything a trainer needs for one task set.

  Attributes:
    model: the MultiTaskModel (all heads, even in single-task mode).
    tasks: the tasks to train, in order.
    joint_dataset: endless dataset of (features, labels with every task's labels).
    task_datasets: task name -> endless dataset for that task (alternating and single mode).
    steps_per_epoch: batches in one pass over the training data.
    evaluate: split name -> {metric: value} on that split, or None if there is no held-out data.
    selection_metric: the metric of `evaluate("dev")` whose maximum selects the best model.
    extras: what the binary needs after training (CoNLL-2000: the featurizer and vocabularies
      that the export bundles).
  """
  model: MultiTaskModel
  tasks: Sequence[Task]
  joint_dataset: tf.data.Dataset
  task_datasets: Mapping[str, tf.data.Dataset]
  steps_per_epoch: int
  evaluate: Callable | None = None
  selection_metric: str | None = None
  extras: dict = dataclasses.field(default_factory=dict)


def build_toy(*, tasks, batch_size, seed, num_examples=4096):
  """The tutorial's two regression tasks: 10 inputs, shared ReLU(20), heads of 1."""
  model = toy_network.build_toy_model(seed=seed)
  model.check_tasks(tasks)
  dataset = toy_data.toy_dataset(num_examples, batch_size=batch_size, seed=seed)
  return TaskSet(model=model, tasks=toy_network.toy_tasks(tasks), joint_dataset=dataset,
                 task_datasets={name: dataset for name in tasks},
                 steps_per_epoch=-(-num_examples // batch_size))


CONLL_TASKS = ("pos", "chunk")


def load_vocabularies(model_dir, train_sentences):
  """The vocabularies saved in model_dir, or new ones built from training data and saved.

  A resumed run must use the ids its checkpoint was trained with, so an existing file wins.
  """
  path = os.path.join(model_dir, "vocab.json")
  if os.path.exists(path):
    return Vocabularies.load(path)
  vocabularies = Vocabularies.build(train_sentences)
  vocabularies.save(path)
  return vocabularies


def build_conll2000(*, tasks, batch_size, seed, model_dir, splits,
                    config=tagger.TaggerConfig(), buckets=pipeline.DEFAULT_BUCKETS,
                    eval_batch_size=128):
  """POS tagging and chunking on CoNLL-2000; dev is the end of the training file.

  The model always has both heads (so a checkpoint of any mode can be evaluated on both
  tasks), but only `tasks` are trained. Each task's alternating stream is shuffled with its
  own seed.

  Args:
    splits: mtlcore.data.conll2000.Splits (read with load_splits).
    model_dir: where the vocabularies are saved, or found when resuming.
  """
  vocabularies = load_vocabularies(model_dir, splits.train)
  featurizer = Featurizer(vocabularies)
  model = tagger.build_tagger(
      config, num_words=featurizer.num_words, num_chars=featurizer.num_chars,
      num_tags={t: len(vocabularies.tags[t]) for t in CONLL_TASKS}, seed=seed)
  model.check_tasks(tasks)

  def stream(stream_tasks, stream_seed):
    return pipeline.training_dataset(
        splits.train, featurizer=featurizer, vocabularies=vocabularies, tasks=stream_tasks,
        batch_size=batch_size, seed=stream_seed, buckets=buckets)

  predictor = tagging.TagPredictor(model, featurizer, vocabularies, tasks=CONLL_TASKS,
                                   batch_size=eval_batch_size, buckets=buckets)
  split_sentences = {"dev": splits.dev, "test": splits.test, "train": splits.train}

  def evaluate(split="dev"):
    sentences = split_sentences[split]
    return tagging.score(sentences, predictor.predict(sentences))

  pieces = pipeline.split_long(splits.train, pipeline.check_buckets(buckets)[-1])
  selection = "chunk_f1" if "chunk" in tasks else "pos_accuracy"
  return TaskSet(
      model=model, tasks=tagger.tagging_tasks(model, tasks),
      joint_dataset=stream(tuple(tasks), seed),
      task_datasets={t: stream((t,), seed + 1 + i) for i, t in enumerate(tasks)},
      steps_per_epoch=-(-len(pieces) // batch_size), evaluate=evaluate,
      selection_metric=selection,
      extras={"vocabularies": vocabularies, "featurizer": featurizer})


def restore_tagger(model_dir, checkpoint="best"):
  """Rebuilds the tagger a model_dir describes and restores its weights.

  Args:
    model_dir: a directory written by mtl-train --task_set=conll2000.
    checkpoint: "best" (best on dev; falls back to the latest if there is none) or "latest".
  Returns:
    (model, featurizer, vocabularies, path of the restored checkpoint).
  """
  config = run_files.read_json(os.path.join(model_dir, "config.json"))
  if config.get("task_set") != "conll2000" or "tagger" not in config:
    raise ConfigError(f"{model_dir} holds a {config.get('task_set')!r} run, not a CoNLL-2000 "
                      f"tagger.")
  vocabularies = Vocabularies.load(os.path.join(model_dir, "vocab.json"))
  featurizer = Featurizer(vocabularies)
  model = tagger.build_tagger(
      tagger.TaggerConfig(**config["tagger"]), num_words=featurizer.num_words,
      num_chars=featurizer.num_chars,
      num_tags={t: len(vocabularies.tags[t]) for t in CONLL_TASKS}, seed=config["seed"])
  best = tf.train.latest_checkpoint(os.path.join(model_dir, "best"))
  latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
  if checkpoint == "best" and best:
    tf.train.Checkpoint(model=model).restore(best).assert_existing_objects_matched()
    return model, featurizer, vocabularies, best
  if latest:
    proxy = tf.train.Checkpoint(trainer=tf.train.Checkpoint(model=model))
    proxy.restore(latest).expect_partial().assert_existing_objects_matched()
    return model, featurizer, vocabularies, latest
  raise ConfigError(f"{model_dir} has no checkpoint to evaluate.")
