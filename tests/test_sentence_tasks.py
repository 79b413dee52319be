"""Sentence-level tasks in the tagging task set (--sentence_tasks): labels from
`# NAME = LABEL` lines before a sentence (and nothing else: CoNLL-2000's `# # I-NP` stays a
token), trained beside token tasks from one column file in joint mode and from a corpus of its
own in alternate mode, scored by accuracy and macro-F1, written by mtl-eval --output as
`gold pred` per sentence and printed by mtl-tag as `# NAME = LABEL` before the tokens."""

import json

import pytest

from mtlcore.errors import DataError
from mtlcore.tagging.columns import parse_columns
from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TAG, TRAIN, error_line, run_in_process

TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--steps_per_loop=10",
        "--log_every=10", "--learning_rate=0.02", "--batch_size=8", "--buckets=32",
        "--dropout=0", *QUICK_TAGGER]
COLUMNS = ["--task_set=tagging", "--columns=word,pos,chunk", "--crf=", "--sentence_tasks=topic"]


def _parse(text, **kwargs):
  return parse_columns(text.encode(), "f.txt", columns=("word", "pos"),
                       tasks=kwargs.pop("tasks", ("pos", "topic")), **kwargs)


def test_a_label_line_before_a_sentence_labels_it_and_nothing_else_is_a_comment():
  text = ("# topic = animal\nthe DT\ndog NN\n\n"
          "# NN\n# =\n\n"  # Token rows: not the four fields of a label line.
          "a DT\n\n"
          "# topic = _\ncat NN\n")  # The placeholder: missing.
  sentences = _parse(text, sentence_tasks=("topic",), placeholder="_")
  assert [s.sentence_labels for s in sentences] == [{"topic": "animal"}, {}, {}, {}]
  assert sentences[1].words == ("#", "#") and sentences[1].tags["pos"] == ("NN", "=")
  # A line of that form with an undeclared NAME is a token row (of the wrong width here).
  with pytest.raises(DataError, match=r"^f.txt:2: expected 2 columns"):
    _parse("# topic = a\n# mood = happy\ncat NN\n", sentence_tasks=("topic",))
  # Without --sentence_tasks every line is read as before.
  plain = _parse("# #\n", tasks=("pos",))
  assert plain[0].words == ("#",) and plain[0].sentence_labels == {}


@pytest.mark.parametrize("text,line,message", [
    ("the DT\n# topic = a\ndog NN\n", 2, "inside a sentence"),
    ("# topic = a\n# topic = b\ndog NN\n", 2, "a second label of 'topic'"),
    ("dog NN\n\n# topic = a\n", 3, "no sentence after it"),
])
def test_a_misplaced_label_line_is_named_by_file_and_line(text, line, message):
  with pytest.raises(DataError, match=rf"^f.txt:{line}: .*{message}"):
    _parse(text, sentence_tasks=("topic",))


def _topic(rows):
  return "animal" if {"cat", "dog"} & {w for w, _, _ in rows} else "other"


def _write(path, sentences, *, unlabelled_every=4, keep=None):
  """Column file with a `# topic = ...` line before all but every `unlabelled_every`-th
  sentence."""
  lines = []
  for i, s in enumerate(sentences):
    if i % unlabelled_every:
      lines.append(f"# topic = {_topic(s)}\n")
    lines += [" ".join(r[k] for k in (keep or range(len(r)))) + "\n" for r in s] + ["\n"]
  path.write_text("".join(lines))
  return path


@pytest.fixture(scope="module")
def topic_run(tmp_path_factory):
  root = tmp_path_factory.mktemp("topic")
  train, test = (fixtures.synthetic_sentences(n, seed=s) for n, s in ((96, 0), (24, 1)))
  _write(root / "train.txt", train)
  _write(root / "test.txt", test)
  model_dir, export_dir = root / "joint", root / "export"
  result = run_in_process(TRAIN, *COLUMNS, *TINY, "--mode=joint", f"--data_dir={root}",
                          "--train=train.txt", "--test=test.txt", f"--model_dir={model_dir}",
                          "--train_steps=120", "--eval_every=60", f"--export_dir={export_dir}")
  assert result.returncode == 0, result.stderr
  return root, test


def test_a_sentence_task_trains_beside_the_token_tasks_from_one_file(topic_run):
  root, _ = topic_run
  metrics = json.loads((root / "joint" / "metrics.json").read_text())
  for split in ("dev", "test"):
    assert {"pos/accuracy", "chunk/f1", "topic/accuracy", "topic/macro_f1"} <= set(
        metrics[split])
    assert 0.0 <= metrics[split]["topic/accuracy"] <= 1.0  # A fraction, as in train/.
  # "animal" holds about 3/4 of the sentences: learning beats always saying the majority.
  assert metrics["test"]["topic/macro_f1"] > 0.6, metrics["test"]


def test_mtl_eval_writes_gold_and_predicted_label_per_labelled_sentence(topic_run, tmp_path):
  root, test = topic_run
  out = tmp_path / "predictions"
  result = run_in_process(EVAL, f"--model_dir={root / 'joint'}", "--split=test",
                          f"--output={out}")
  assert result.returncode == 0, result.stderr
  assert "topic/macro_f1" in result.stdout
  rows = [line.split() for line in (out / "topic.txt").read_text().splitlines()]
  gold = [_topic(s) for i, s in enumerate(test) if i % 4]
  assert [g for g, _ in rows] == gold and all(p in ("animal", "other") for _, p in rows)


def test_mtl_tag_prints_the_sentence_label_before_the_tokens(topic_run):
  root, _ = topic_run
  tagged = run_in_process(TAG, f"--model={root / 'export'}",
                          stdin="the old dog barks .\n\nprices will rise .\n")
  assert tagged.returncode == 0, tagged.stderr
  blocks = tagged.stdout.split("\n\n")
  first = blocks[0].splitlines()
  assert first[0] in ("# topic = animal", "# topic = other")
  assert [line.split()[0] for line in first[1:]] == ["the", "old", "dog", "barks", "."]
  assert all(len(line.split()) == 3 for line in first[1:])  # word pos chunk.
  # The empty input line gives just a blank line, no label; the next sentence has its own.
  assert blocks[1].startswith("\n# topic = ") and len(blocks) == 3


def test_a_sentence_task_with_a_corpus_of_its_own_trains_in_alternate_mode(topic_run, tmp_path):
  root, _ = topic_run
  _write(tmp_path / "topics.txt", fixtures.synthetic_sentences(40, seed=5), keep=(0,))
  result = run_in_process(TRAIN, *COLUMNS, *TINY, "--mode=alternate", f"--data_dir={root}",
                          f"--train=pos:train.txt,chunk:train.txt,topic:{tmp_path}/topics.txt",
                          f"--model_dir={tmp_path / 'alt'}", "--train_steps=60",
                          "--eval_every=0")
  assert result.returncode == 0, result.stderr
  metrics = json.loads((tmp_path / "alt" / "metrics.json").read_text())
  assert {"pos/accuracy", "chunk/f1", "topic/accuracy", "topic/macro_f1"} <= set(metrics["dev"])


def test_a_sentence_task_without_labels_or_clashing_with_a_column_is_one_line(topic_run,
                                                                              tmp_path):
  root, _ = topic_run
  clash = run_in_process(TRAIN, "--task_set=tagging", "--columns=word,pos,chunk",
                         "--sentence_tasks=pos", f"--data_dir={root}", "--train=train.txt",
                         f"--model_dir={tmp_path / 'a'}")
  assert "--sentence_tasks must name new tasks" in error_line(clash)
  fixtures.write_columns(tmp_path / "plain.txt", fixtures.synthetic_sentences(20, seed=3))
  unlabelled = run_in_process(TRAIN, *COLUMNS, f"--data_dir={tmp_path}", "--train=plain.txt",
                              f"--model_dir={tmp_path / 'b'}")
  assert "no sentence label of task 'topic'" in error_line(unlabelled)
