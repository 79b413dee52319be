"""The tagging task set's evaluation through the engine (mtlcore.evaluation with
evaluation.DecodedScores) equals the sentence-list scorer (evaluation.score over
TagPredictor's tags, which tests/test_metrics.py pins to conlleval) key for key and exactly:
with CRF and softmax heads, a gold chunk type never seen in training, missing labels, and
sentences longer than the largest bucket. The evaluation keeps only its sums."""

import numpy as np
import pytest

from mtlcore.tagging import evaluation
from mtlcore.tagging.task_set import TaggingTaskSet
from tests import fixtures


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
  root = tmp_path_factory.mktemp("scored")
  rng = np.random.default_rng(0)
  train = [fixtures.with_ner(s) for s in fixtures.synthetic_sentences(60, seed=0)]
  test = [fixtures.with_ner(s) for s in fixtures.synthetic_sentences(30, seed=1, max_phrases=14)]
  # A chunk type only the test file has, and missing labels ("_") in both files.
  test[0] = [(w, p, "B-LST" if i == 0 else c, n) for i, (w, p, c, n) in enumerate(test[0])]
  for sentences in (train, test):
    for s in sentences:
      for i in range(len(s)):
        if rng.random() < 0.05:
          s[i] = (s[i][0], "_", s[i][2], "_")
  fixtures.write_columns(root / "train.txt", train)
  fixtures.write_columns(root / "test.txt", test)
  task_set = TaggingTaskSet({"columns": "word,pos,chunk,ner", "train": "train.txt",
                             "test": "test.txt", "placeholder": "_", "crf": "chunk,ner",
                             "word_dim": 8, "char_filters": 4, "hidden_size": 8,
                             "buckets": [8, 16]})
  data = task_set.load_data(str(root))
  tasks = ("pos", "chunk", "ner")
  model = task_set.build_model(tasks, seed=0, assets_dir=str(root), data=data)
  return task_set, data, model, tasks


@pytest.mark.parametrize("split", ["dev", "test"])
def test_the_engines_evaluation_equals_the_sentence_list_scorer_exactly(scored, split):
  task_set, data, model, tasks = scored
  engine = task_set.evaluate(model, data, tasks, split)
  (corpus,) = data.splits[split]
  predictor = evaluation.TagPredictor(model, task_set.featurizer, task_set.vocabularies,
                                      tasks=tasks, buckets=task_set.buckets)
  legacy = evaluation.score(corpus.sentences, predictor.predict(corpus.sentences), data.scoring)
  assert list(engine) == list(legacy)
  assert engine == legacy  # Exactly: the same counts, the same arithmetic.
  if split == "test":
    assert "chunk_f1_by_type/LST" in engine and max(len(s) for s in corpus.sentences) > 16


def test_the_evaluation_state_is_one_vector_of_counts(scored):
  task_set, data, model, tasks = scored
  task_set.evaluate(model, data, tasks, "test")
  evaluator, scorers = task_set._engine(model, data, tasks)  # pylint: disable=protected-access
  types = {s.task: len(s.types) for s in scorers}
  assert types["pos"] == 0 and types["chunk"] >= 4
  assert evaluator.size == sum(2 + 3 * n for n in types.values())
