"""Column files and the tagging task set as a library: layouts, placeholders, per-task corpora,
span scoring, and errors that name file, line and column."""

import numpy as np
import pytest
import tensorflow as tf

from mtlcore import task_set
from mtlcore.tagging import conlleval, evaluation
from mtlcore.tagging import columns
from mtlcore.errors import ConfigError, DataError
from mtlcore.trainers import JointTrainer
from mtlcore.optimizers import Adam
from tests import fixtures
from tests.test_partial_labels import assert_chunk_adds_nothing

COLUMNS = ("word", "pos", "chunk", "ner")
SMALL = dict(word_dim=8, char_dim=4, char_filters=4, hidden_size=8)


def _four_column_sentences(n, seed=0):
  return [fixtures.with_ner(s) for s in fixtures.synthetic_sentences(n, seed=seed)]


def test_a_four_column_file_with_docstart_and_placeholders(tmp_path):
  rows = _four_column_sentences(3)
  rows[1][0] = (rows[1][0][0], "_", rows[1][0][2], "_")
  path = fixtures.write_columns(tmp_path / "a.txt", rows, docstart=True)
  sentences = columns.read_column_file(path, columns=COLUMNS, tasks=("pos", "chunk", "ner"),
                                       placeholder="_", span_tasks=("chunk", "ner"))
  assert len(sentences) == 3 and sentences[0].words == tuple(r[0] for r in rows[0])
  assert sentences[1].tags["pos"][0] is None and sentences[1].tags["ner"][0] is None
  assert sentences[1].tags["chunk"][0] == rows[1][0][2]
  assert not sentences[1].fully_labelled("pos") and sentences[0].fully_labelled("ner")


def test_a_file_for_some_tasks_may_hold_just_their_columns(tmp_path):
  rows = _four_column_sentences(2)
  path = fixtures.write_columns(tmp_path / "pos.txt", rows, keep=(0, 1))
  sentences = columns.read_column_file(path, columns=COLUMNS, tasks=("pos",))
  assert set(sentences[0].tags) == {"pos"}
  assert sentences[0].labels("chunk") == (None,) * len(sentences[0])


@pytest.mark.parametrize("text, line, message", [
    ("a DT B-NP O\nb NN I-NP\n", 2, "expected 4 columns \\(word pos chunk ner\\) as on the "
     "file's first line, found 3"),
    ("a DT B-NP\n", 1, "expected 4 columns \\(word pos chunk ner\\) or 2 columns "
     "\\(word pos\\), found 3"),
    ("a DT B-NP O\n\nb NN X-NP O\n", 3, "column 3 \\(chunk\\): invalid span tag 'X-NP'"),
    ("a DT B-NP O\nb NN I-NP _\n", 2, "column 4 \\(ner\\): invalid span tag '_'; expected O "
     "or B-, I-, E-, S-TYPE; declare a placeholder"),
])
def test_malformed_column_files_name_file_line_and_column(tmp_path, text, line, message):
  path = tmp_path / "bad.txt"
  path.write_text(text)
  with pytest.raises(DataError, match=message) as info:
    columns.read_column_file(path, columns=COLUMNS, tasks=("pos",) if "or 2" in message
                             else ("pos", "chunk", "ner"), span_tasks=("chunk", "ner"))
  assert str(info.value).startswith(f"{path}:{line}: ")


def test_bioes_spans_follow_the_conlleval_extension():
  tags = ["S-PER", "B-ORG", "E-ORG", "S-PER", "S-PER", "O", "B-ANI", "I-ANI", "E-ANI", "E-ANI"]
  assert conlleval.chunk_spans(tags) == {(0, 0, "PER"), (1, 2, "ORG"), (3, 3, "PER"),
                                       (4, 4, "PER"), (6, 8, "ANI"), (9, 9, "ANI")}
  # IOB1/IOB2 read as conlleval.pl reads them, unchanged.
  assert conlleval.chunk_spans(["I-NP", "I-NP", "B-NP", "O", "I-VP"]) == {
      (0, 1, "NP"), (2, 2, "NP"), (4, 4, "VP")}


def _task_set(tmp_path, **options):
  return task_set.resolve("tagging", {"columns": list(COLUMNS), **SMALL, **options})


def test_span_columns_are_detected_and_scored_per_type(tmp_path):
  rows = _four_column_sentences(30)
  fixtures.write_columns(tmp_path / "train.txt", rows)
  tagging_set = _task_set(tmp_path, train=str(tmp_path / "train.txt"))
  data = tagging_set.load_data(None)
  assert data.scoring == {"pos": "accuracy", "chunk": "span", "ner": "span"}
  assert tagging_set.selection == ("ner/f1", "chunk/f1", "pos/accuracy")
  assert tagging_set.splits == ("dev",) and len(data.splits["dev"][0].sentences) == 6
  gold = data.splits["dev"][0].sentences
  perfect = {t: [s.tags[t] for s in gold] for t in ("pos", "ner")}
  scores = evaluation.score(gold, perfect, data.scoring)
  assert scores["ner/f1"] == 100.0 and scores["pos/accuracy"] == 100.0
  assert "ner_f1_by_type/ANI" in scores and "pos/f1" not in scores


def test_a_span_column_with_a_bad_tag_fails_naming_its_line(tmp_path):
  rows = _four_column_sentences(10)
  rows[4][1] = (*rows[4][1][:2], "X-NP", rows[4][1][3])
  path = fixtures.write_columns(tmp_path / "train.txt", rows)
  line = sum(len(s) + 1 for s in rows[:4]) + 2
  with pytest.raises(DataError, match=f"^{path}:{line}: column 3 \\(chunk\\): invalid span tag"):
    _task_set(tmp_path, train=str(path)).load_data(None)


@pytest.mark.parametrize("options, message", [
    ({"columns": ["pos", "chunk"]}, "--columns must name each column once, one of them 'word'"),
    ({"train": "pos:a.txt"}, "--train must give one file for every task"),
    ({"train": "lemma:a.txt"}, "--train=lemma:a.txt: .lemma. is not a task; the tasks are "
                               "\\[.pos., .chunk., .ner.\\]"),
    ({"train": "a.txt", "scoring": "ner:bio"}, "--scoring takes TASK:KIND"),
    ({"train": "a.txt", "crf": ["lemma"]}, "--crf names unknown task\\(s\\) \\['lemma'\\]"),
    ({"train": "a.txt", "reads": "pos:3"}, "pos' must read a layer from 1 to num_layers=2"),
])
def test_bad_options_name_the_flag(tmp_path, options, message):
  with pytest.raises(ConfigError, match=message):
    _task_set(tmp_path, **options)


def _two_corpora(tmp_path):
  """A POS-only corpus of 60 sentences and a chunk-only one of 6, as two-column files."""
  fixtures.write_columns(tmp_path / "pos.txt", fixtures.synthetic_sentences(60, seed=1),
                         keep=(0, 1))
  fixtures.write_columns(tmp_path / "chunk.txt", fixtures.synthetic_sentences(6, seed=2),
                         keep=(0, 2))
  tagging_set = task_set.resolve("tagging", {
      "columns": ["word", "pos", "chunk"], "crf": ["chunk"], "reads": {"pos": 1}, **SMALL,
      "train": f"pos:{tmp_path / 'pos.txt'},chunk:{tmp_path / 'chunk.txt'}"})
  data = tagging_set.load_data(None)
  model = tagging_set.build_model(("pos", "chunk"), seed=0, assets_dir=str(tmp_path), data=data)
  return tagging_set, data, model


def test_per_task_corpora_merge_in_joint_mode_and_stay_apart_in_alternate_mode(tmp_path):
  tagging_set, data, model = _two_corpora(tmp_path)
  assert [len(c.sentences) for c in data.splits["train"]] == [48, 5]
  assert tagging_set.vocabularies.tags["chunk"] and tagging_set.vocabularies.tags["pos"]
  joint = tagging_set.joint_dataset(data, ("pos", "chunk"), batch_size=4, seed=0)
  assert joint.steps_per_epoch == 14  # ceil(53 / 4).
  rows_seen = 0
  for features, labels in joint.make_dataset(0).take(14):
    real = tf.sequence_mask(features["length"], labels["pos"].shape[1]).numpy()
    pos_rows = np.any((labels["pos"].numpy() >= 0) & real, axis=1)
    chunk_rows = np.any((labels["chunk"].numpy() >= 0) & real, axis=1)
    assert np.all(pos_rows | chunk_rows)
    assert not np.any(pos_rows & chunk_rows)  # A sentence carries its own corpus' labels.
    rows_seen += int(chunk_rows.sum())
  assert rows_seen >= 5
  chunk_stream = tagging_set.task_dataset(data, "chunk", batch_size=4, seed=0)
  assert chunk_stream.steps_per_epoch == 2


@pytest.mark.parametrize("crf", [True, False])
def test_a_merged_batch_without_chunk_labels_moves_neither_chunk_head_nor_trunk_beyond_pos(
    tmp_path, crf):
  tagging_set, data, model = _two_corpora(tmp_path)
  if not crf:
    tagging_set.config = type(tagging_set.config)(**{**SMALL, "reads": {"pos": 1}})
    model = tagging_set.build_model_for(("pos", "chunk"), tagging_set.vocabularies, seed=0)
  assert (type(model.heads["chunk"]).__name__ == "CRFTagHead") == crf
  trainer = JointTrainer(model=model, tasks=tagging_set.make_tasks(model, ("pos", "chunk")),
                         optimizer=Adam(1e-2), dataset=lambda start: None)
  stream = tagging_set.joint_dataset(data, ("pos", "chunk"), batch_size=4, seed=0)
  features, labels = next((f, l) for f, l in stream.make_dataset(0).take(30)
                          if not np.any(tf.sequence_mask(f["length"], l["chunk"].shape[1])
                                        & (l["chunk"] >= 0)))
  assert_chunk_adds_nothing(trainer, features, labels)
