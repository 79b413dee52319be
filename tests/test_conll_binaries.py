"""End-to-end tests of mtl-train, mtl-eval and mtl-tag on CoNLL-format data, as subprocesses."""

import json
import os

import pytest
import tensorflow as tf

from mtlcore.tagging.conll2000 import read_conll
from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TAG, TRAIN, error_line, run_binary, run_in_process

SMALL = ["--word_dim=16", "--char_filters=8", "--hidden_size=16", "--steps_per_loop=10",
         "--log_every=20", "--checkpoint_every=40", "--learning_rate=0.01",
         "--buckets=16,32"]


def _blocks(text):
  """CoNLL output -> list of sentences, each a list of lines (a blank line ends a sentence)."""
  sentences = [[]]
  for line in text.splitlines():
    if line:
      sentences[-1].append(line)
    else:
      sentences.append([])
  return sentences[:-1]


def _global_step(model_dir):
  path = tf.train.latest_checkpoint(str(model_dir / "checkpoints"))
  return int(tf.train.load_variable(path, "trainer/global_step/.ATTRIBUTES/VARIABLE_VALUE"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A joint model trained on synthetic data, exported; shared by the tests below."""
  root = tmp_path_factory.mktemp("joint")
  data = fixtures.write_dataset(root / "data", train=150, test=40)
  model_dir = root / "model"
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={model_dir}",
                      f"--export_dir={root / 'export'}", "--train_steps=160", "--eval_every=80",
                      *SMALL)
  assert result.returncode == 0, result.stderr
  return root, data, model_dir


def test_training_writes_metrics_that_show_learning(trained):
  _, _, model_dir = trained
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["mode"] == "joint" and metrics["steps"] == 160 and metrics["seed"] == 0
  for split in ("dev", "test"):
    for key in ("pos/accuracy", "chunk/precision", "chunk/recall", "chunk/f1"):
      assert 0.0 <= metrics[split][key] <= 100.0
  # The synthetic grammar is easy: a model that learned anything gets most of it right.
  assert metrics["test"]["pos/accuracy"] > 90.0
  assert metrics["test"]["chunk/f1"] > 80.0
  assert (model_dir / "best").is_dir() and (model_dir / "assets" / "vocab.json").is_file()


def test_training_resumes_where_it_stopped(trained):
  _, data, model_dir = trained
  assert _global_step(model_dir) == 160
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={model_dir}",
                      "--train_steps=200", "--eval_every=80", *SMALL)
  assert result.returncode == 0, result.stderr
  assert "at step 160" in result.stderr and "step 200/200" in result.stderr
  assert "step 20/200" not in result.stderr
  assert _global_step(model_dir) == 200


def test_resuming_with_another_model_shape_is_refused(trained):
  _, data, model_dir = trained
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={model_dir}",
                      "--train_steps=300", *SMALL[:2], "--hidden_size=32")
  assert "holds a run with different settings" in error_line(result)


def test_eval_writes_conlleval_input_and_matches_the_export(trained, tmp_path):
  root, data, model_dir = trained
  output = tmp_path / "predictions"
  result = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}",
                      f"--output={output}")
  assert result.returncode == 0, result.stderr
  assert "chunk/f1" in result.stdout
  assert sorted(p.name for p in output.iterdir()) == [".mtlcore-output", "chunk.txt", "pos.txt"]
  again = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}",
                         f"--output={output}", "--split=dev")  # Its own output: replaced.
  assert again.returncode == 0, again.stderr
  assert len(_blocks((output / "pos.txt").read_text())) == 30  # dev: a fifth of 150.
  again = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}",
                         f"--output={output}")
  assert again.returncode == 0, again.stderr
  gold = read_conll(data / "test.txt.gz")
  blocks = {t: _blocks((output / f"{t}.txt").read_text()) for t in ("pos", "chunk")}
  predicted = {}
  for task, task_blocks in blocks.items():
    assert len(task_blocks) == len(gold)
    rows = [line.split(" ") for line in task_blocks[0]]
    assert all(len(r) == 3 for r in rows)  # word gold pred: conlleval's input.
    assert [(r[0], r[1]) for r in rows] == list(zip(gold[0].words, gold[0].tags[task]))
    predicted[task] = [[line.split(" ")[2] for line in b] for b in task_blocks]

  # The exported SavedModel tags like the checkpoint mtl-eval scored (the best on dev).
  text = "".join(" ".join(s.words) + "\n" for s in gold)
  tagged = run_in_process(TAG, f"--model={root / 'export'}", stdin=text)
  assert tagged.returncode == 0, tagged.stderr
  served = [[l.split(" ") for l in b] for b in _blocks(tagged.stdout)]
  assert len(served) == len(gold)
  for i, s in enumerate(served):
    assert [(p, c) for _, p, c in s] == list(zip(predicted["pos"][i], predicted["chunk"][i]))


def test_tag_answers_every_line_it_can(trained):
  root, _, _ = trained
  stdin = "the old dog barks\n\n" + "John " * 300 + "\nZürich naïve 東京\n"
  result = run_in_process(TAG, f"--model={root / 'export'}", stdin=stdin)
  assert result.returncode == 0, result.stderr
  blocks = _blocks(result.stdout)
  assert [len(b) for b in blocks] == [4, 0, 300, 3]
  assert blocks[3][2].startswith("東京 ")


def test_tag_reports_a_line_it_cannot_decode_and_tags_the_rest(trained):
  root, _, _ = trained
  proc = run_in_process(TAG, f"--model={root / 'export'}", stdin=b"the dog\n\xff\xfe\na cat\n")
  assert proc.returncode == 1
  assert "line 2: not valid UTF-8" in proc.stderr and "Traceback" not in proc.stderr
  assert _blocks(proc.stdout) == [["the DT B-NP", "dog NN I-NP"], ["a DT B-NP", "cat NN I-NP"]]


def test_alternate_mode_trains_and_evaluates_both_tasks(tmp_path):
  data = fixtures.write_dataset(tmp_path / "data", train=80, test=20)
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}",
                      "--mode=alternate", "--train_steps=40", *SMALL, *QUICK_TAGGER)
  assert result.returncode == 0, result.stderr
  metrics = json.loads((tmp_path / "m" / "metrics.json").read_text())
  # The default trains the language-model task too; only the tagging tasks are scored.
  assert metrics["mode"] == "alternate" and metrics["tasks"] == ["pos", "chunk", "lm"]
  assert {"pos/accuracy", "chunk/f1"} <= set(metrics["test"])
  assert not [k for k in metrics["test"] if k.startswith("lm")]


def test_single_mode_trains_scores_exports_and_tags_only_its_task(tmp_path):
  data = fixtures.write_dataset(tmp_path / "data", train=80, test=20)
  model_dir, export = tmp_path / "m", tmp_path / "export"
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={model_dir}",
                      "--mode=single", "--tasks=chunk", "--train_steps=40",
                      f"--export_dir={export}", *SMALL, *QUICK_TAGGER)
  assert result.returncode == 0, result.stderr
  metrics = json.loads((model_dir / "metrics.json").read_text())
  assert metrics["mode"] == "single" and metrics["tasks"] == ["chunk"]
  for split in ("dev", "test"):
    assert {k.split("/")[0] for k in metrics[split]} <= {"chunk", "chunk_f1_by_type"}
  variables = [name for name, _ in tf.train.list_variables(
      tf.train.latest_checkpoint(str(model_dir / "checkpoints")))]
  assert any("heads/chunk" in v for v in variables)
  assert not any("heads/pos" in v for v in variables)
  evaluated = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}")
  assert evaluated.returncode == 0, evaluated.stderr
  assert "chunk/f1" in evaluated.stdout and "pos/" not in evaluated.stdout
  tagged = run_in_process(TAG, f"--model={export}", stdin="the old dog barks\n")
  assert tagged.returncode == 0, tagged.stderr
  assert [len(l.split(" ")) for l in _blocks(tagged.stdout)[0]] == [2, 2, 2, 2]


@pytest.mark.parametrize("content, message", [
    (b"the DT B-NP\ndog NN\n", "train.txt:2: expected 3 columns"),
    (b"the DT B-NP\ndog NN Q-NP\n", "train.txt:2: column 3 (chunk): invalid span tag 'Q-NP'"),
    (b"", "train.txt: no sentences"),
])
def test_malformed_training_file_fails_with_one_line_and_no_model_files(tmp_path, content,
                                                                        message):
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.txt").write_bytes(content)
  fixtures.write_conll(data / "test.txt", fixtures.synthetic_sentences(3, seed=0))
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}",
                      "--train_steps=5", *SMALL)
  assert message in error_line(result)
  assert not list((tmp_path / "m").glob("**/*.index"))


def test_smoke_run_on_the_real_data_beats_the_majority_tag_baseline(real_conll_dir, tmp_path):
  """A few hundred steps on the real files; dev chunk F1 must beat tagging each word with its
  most frequent training chunk tag."""
  from mtlcore.tagging import conll2000  # pylint: disable=g-import-not-at-top
  from mtlcore.tagging.conlleval import chunk_scores  # pylint: disable=g-import-not-at-top
  # A process of its own, with XLA's default optimisation (the suite's programs are compiled
  # without it: tests/conftest.py), as a user's run is: 300 steps of this size ran at 141
  # ms/step unoptimised and 38 optimised (AMD EPYC, one thread), 73.6 s -> 53.6 s in all.
  result = run_binary(TRAIN, f"--data_dir={real_conll_dir}",
                      f"--model_dir={tmp_path}", "--train_steps=300", "--eval_every=0",
                      "--word_dim=50", "--char_filters=32", "--hidden_size=64",
                      "--steps_per_loop=50", "--log_every=100", "--lm_vocab=0",
                      env={"XLA_FLAGS": os.environ.get("XLA_FLAGS", "").replace(
                          "--xla_backend_optimization_level=0", "").strip() or None})
  assert result.returncode == 0, result.stderr
  dev_f1 = json.loads((tmp_path / "metrics.json").read_text())["dev"]["chunk/f1"]
  splits = conll2000.load_splits(real_conll_dir)
  counts = {}
  for s in splits.train:
    for w, c in zip(s.words, s.tags["chunk"]):
      counts.setdefault(w, {}).setdefault(c, 0)
      counts[w][c] += 1
  majority = {w: max(c, key=c.get) for w, c in counts.items()}
  baseline = chunk_scores([s.tags["chunk"] for s in splits.dev],
                          [[majority.get(w, "B-NP") for w in s.words] for s in splits.dev])
  print(f"dev chunk F1 {dev_f1:.2f}, majority-tag baseline {baseline['overall']['f1']:.2f}")
  assert dev_f1 > baseline["overall"]["f1"] + 5.0, (dev_f1, baseline["overall"]["f1"])
  # The engine's evaluation (metrics.json's) equals the sentence-list scorer on the real test
  # set, exactly (tests/test_tagging_evaluation.py pins the same on synthetic data).
  from mtlcore.tagging import evaluation  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  _, task_set, model, data, _ = run.restore(str(tmp_path), data_dir=str(real_conll_dir))
  (corpus,) = data.splits["test"]
  predictor = evaluation.TagPredictor(model, task_set.featurizer, task_set.vocabularies,
                                      tasks=("pos", "chunk"), buckets=task_set.buckets)
  legacy = evaluation.score(corpus.sentences, predictor.predict(corpus.sentences), data.scoring)
  stored = json.loads((tmp_path / "metrics.json").read_text())["test"]
  assert stored == legacy, {k: (stored.get(k), legacy.get(k)) for k in legacy}
