"""Does the evaluation's state grow with the split? The engine's against the sentence list.

  python3 -m mtlcore.benchmarks.studies.evaluation_state --copies=1,10,100

The CoNLL-2000 test set ($MTL_DATA_DIR or --data_dir), repeated --copies times, is scored
with a small untrained tagger (POS softmax, chunk CRF) two ways: by the tagging task set's
`evaluate` (the engine: per batch, the decoded tags' token and chunk counts are added to one
vector) and by the sentence-list path it replaced (TagPredictor collects every sentence's
tags, then `evaluation.score` counts them), both over one input pipeline built beforehand.
Prints, per size, each pass's peak of Python heap allocated during it (tracemalloc: Python
objects and numpy arrays), its wall time and whether the two paths' metrics are equal.
Names the device.
"""

import time
import tracemalloc

from absl import app, flags

FLAGS = flags.FLAGS
flags.DEFINE_list("copies", ["1", "10", "100"], "How many copies of the test set to score.")
flags.DEFINE_string("data_dir", None, "CoNLL-2000 directory (default: $MTL_DATA_DIR).")


def _measured(fn):
  tracemalloc.start()
  tracemalloc.reset_peak()
  start = time.time()
  result = fn()
  seconds = time.time() - start
  _, peak = tracemalloc.get_traced_memory()
  tracemalloc.stop()
  return result, peak / 2**20, seconds


def main(argv):
  del argv
  import dataclasses  # pylint: disable=g-import-not-at-top
  import tempfile  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top

  from mtlcore.benchmarks import hardware  # pylint: disable=g-import-not-at-top
  from mtlcore.tagging import evaluation, pipeline  # pylint: disable=g-import-not-at-top
  from mtlcore.tagging.conll2000_task_set import Conll2000TaskSet  # pylint: disable=g-import-not-at-top

  task_set = Conll2000TaskSet({"word_dim": 16, "char_filters": 8, "hidden_size": 16,
                               "lm_vocab": 0})
  data = task_set.load_data(FLAGS.data_dir)
  tasks = ("pos", "chunk")
  model = task_set.build_model(tasks, seed=0, assets_dir=tempfile.mkdtemp(), data=data)
  (test,) = data.splits["test"]
  print(f"Device: {hardware.describe_device()}")
  print("| copies | sentences | engine: peak MiB | s | sentence list: peak MiB | s | "
        "equal |")
  print("|---|---|---|---|---|---|---|")
  for copies in map(int, FLAGS.copies):
    corpus = dataclasses.replace(test, sentences=test.sentences * copies)
    split = dataclasses.replace(data, splits={**data.splits, "test": [corpus]})
    evaluator, scorers = task_set._engine(model, split, tasks)  # pylint: disable=protected-access
    for scorer in scorers:
      scorer.sentences = corpus.sentences
    # The input pipeline (the split's ragged tensors), the same for both, is built outside
    # the measurement; each pass then reads it once.
    dataset = pipeline.eval_dataset(corpus.sentences, featurizer=task_set.featurizer,
                                    vocabularies=task_set.vocabularies, tasks=tasks,
                                    batch_size=task_set.eval_batch_size,
                                    buckets=task_set.buckets)
    evaluator.statistics(dataset.take(1))  # Traced outside the measurement.
    sums, engine_mib, engine_s = _measured(lambda: evaluator.statistics(dataset))
    predictor = evaluation.TagPredictor(model, task_set.featurizer, task_set.vocabularies,
                                        tasks=tasks, buckets=task_set.buckets)
    names = {t: np.array(task_set.vocabularies.tags[t], dtype=object) for t in tasks}

    def sentence_list():
      # TagPredictor.predict's pass over the same dataset: every sentence's tags kept.
      out = {t: [None] * len(corpus.sentences) for t in tasks}
      for features, _ in dataset:
        ids = predictor._predict(features)  # pylint: disable=protected-access
        for t in tasks:
          for row, i, n in zip(ids[t].numpy(), features["index"].numpy(),
                               features["length"].numpy()):
            out[t][i] = tuple(names[t][row[:n]])
      return evaluation.score(corpus.sentences, out, split.scoring)

    legacy, legacy_mib, legacy_s = _measured(sentence_list)
    equal = evaluator.results(sums) == legacy
    print(f"| {copies} | {len(corpus.sentences):,} | {engine_mib:.2f} | {engine_s:.1f} | "
          f"{legacy_mib:.1f} | {legacy_s:.1f} | {equal} |", flush=True)


if __name__ == "__main__":
  app.run(main)
