"""The tagging task set through the binaries: three tasks from a four-column file trained in
joint and alternate mode, evaluated with conlleval output per span task, exported and tagged;
two corpora labelled for different tasks trained jointly; and a checkpoint whose size does not
depend on the corpus."""

import json
import os
import re

import pytest

from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TAG, TRAIN, error_line, run_in_process

TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--steps_per_loop=10",
        "--log_every=10", "--learning_rate=0.01", "--batch_size=8", "--buckets=32"]
FOUR = ["--task_set=tagging", "--columns=word,pos,chunk,ner", "--crf=chunk,ner"]


@pytest.fixture(scope="module")
def four_columns(tmp_path_factory):
  directory = tmp_path_factory.mktemp("four")
  sentences = lambda n, seed: [fixtures.with_ner(s)
                               for s in fixtures.synthetic_sentences(n, seed=seed)]
  fixtures.write_columns(directory / "train.txt", sentences(80, 0), docstart=True)
  fixtures.write_columns(directory / "test.txt", sentences(20, 1))
  return directory


@pytest.mark.parametrize("mode", ["joint", "alternate"])
def test_three_tasks_from_a_four_column_file_train_evaluate_export_and_tag(
    four_columns, tmp_path, mode):
  model_dir, export_dir = tmp_path / "run", tmp_path / "export"
  result = run_in_process(TRAIN, *FOUR, *TINY, *QUICK_TAGGER, f"--mode={mode}",
                      f"--data_dir={four_columns}",
                      "--train=train.txt", "--test=test.txt", f"--model_dir={model_dir}",
                      "--train_steps=60", "--eval_every=30", f"--export_dir={export_dir}")
  assert result.returncode == 0, result.stderr
  metrics = json.loads((model_dir / "metrics.json").read_text())
  for split in ("dev", "test"):
    assert {"pos/accuracy", "chunk/f1", "ner/f1", "ner/precision", "ner/recall"} <= set(
        metrics[split])
    assert any(k.startswith("ner_f1_by_type/") for k in metrics[split])
    assert "pos/f1" not in metrics[split]

  out = tmp_path / "predictions"
  evaluated = run_in_process(EVAL, f"--model_dir={model_dir}", "--split=test", f"--output={out}")
  assert evaluated.returncode == 0, evaluated.stderr
  assert "ner/f1" in evaluated.stdout
  assert sorted(os.listdir(out)) == [".mtlcore-output", "chunk.txt", "ner.txt", "pos.txt"]
  gold = [fixtures.with_ner(s) for s in fixtures.synthetic_sentences(20, seed=1)]
  blocks = (out / "ner.txt").read_text().split("\n\n")
  first = [line.split() for line in blocks[0].splitlines()]
  assert [(w, g) for w, g, _ in first] == [(r[0], r[3]) for r in gold[0]]
  assert len([b for b in blocks if b.strip()]) == 20

  tagged = run_in_process(TAG, f"--model={export_dir}", stdin="John has been sold .\n")
  assert tagged.returncode == 0, tagged.stderr
  rows = [line.split() for line in tagged.stdout.splitlines() if line]
  assert len(rows) == 5 and all(len(r) == 4 for r in rows)  # word pos chunk ner.
  assert rows[0][0] == "John"


def test_two_corpora_for_different_tasks_train_jointly(tmp_path):
  fixtures.write_columns(tmp_path / "pos.txt", fixtures.synthetic_sentences(80, seed=1),
                         keep=(0, 1))
  fixtures.write_columns(tmp_path / "chunk.txt", fixtures.synthetic_sentences(20, seed=2),
                         keep=(0, 2))
  model_dir = tmp_path / "run"
  result = run_in_process(TRAIN, "--task_set=tagging", "--columns=word,pos,chunk", "--crf=chunk",
                      *TINY, f"--data_dir={tmp_path}", "--train=pos:pos.txt,chunk:chunk.txt",
                      f"--model_dir={model_dir}", "--train_steps=40", "--eval_every=0")
  assert result.returncode == 0, result.stderr
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert {"pos/accuracy", "chunk/f1"} <= set(metrics["dev"])
  config = json.loads((model_dir / "config.json").read_text())
  assert config["options"]["train"] == {"pos": "pos.txt", "chunk": "chunk.txt"}


@pytest.mark.parametrize("flags, message", [
    (["--train=train.txt", "--columns=word,pos,chunk"],
     "train.txt:3: expected 3 columns \\(word pos chunk\\), found 4"),
    (["--train=bad.txt", "--columns=word,pos,chunk,ner"],
     "bad.txt:5: column 3 \\(chunk\\): invalid span tag 'X-NP'"),
    (["--train=train.txt", "--columns=word,pos,chunk,ner", "--crf=lemma"],
     "--crf names unknown task\\(s\\) \\['lemma'\\]"),
])
def test_bad_column_input_fails_with_one_line(four_columns, tmp_path, flags, message):
  (four_columns / "bad.txt").write_text("a DT B-NP O\nb NN I-NP O\n\nc DT B-NP O\nd NN X-NP O\n")
  result = run_in_process(TRAIN, "--task_set=tagging", *TINY, f"--data_dir={four_columns}", *flags,
                      f"--model_dir={tmp_path / 'run'}", "--train_steps=5")
  assert re.search(message, error_line(result))


def _checkpoint_bytes(model_dir):
  directory = model_dir / "checkpoints"
  return sum(os.path.getsize(directory / n) for n in os.listdir(directory)
             if n.startswith("ckpt-20."))


def test_a_checkpoint_does_not_grow_with_the_corpus(tmp_path):
  sentences = [fixtures.with_ner(s) for s in fixtures.synthetic_sentences(50, seed=0)]
  fixtures.write_columns(tmp_path / "one.txt", sentences)
  fixtures.write_columns(tmp_path / "ten.txt", sentences * 10)
  sizes = []
  for name in ("one", "ten"):
    result = run_in_process(TRAIN, *FOUR, *TINY, "--mode=alternate", f"--data_dir={tmp_path}",
                        f"--train={name}.txt", "--dev=one.txt", f"--model_dir={tmp_path / name}",
                        "--train_steps=20", "--checkpoint_every=20", "--eval_every=0",
                        *QUICK_TAGGER)
    assert result.returncode == 0, result.stderr
    sizes.append(_checkpoint_bytes(tmp_path / name))
  assert abs(sizes[0] - sizes[1]) <= 16, sizes
