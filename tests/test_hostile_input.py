"""Hostile input: generated malformed CoNLL files against the reader and the binaries."""

import gzip
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlcore.tagging.columns import TaggedSentence
from mtlcore.tagging.conll2000 import read_conll
from mtlcore.errors import DataError
from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TRAIN, error_line, run_in_process

_WORDS = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=12)
_TAGS = st.sampled_from(["B-NP", "I-NP", "O", "B-VP", "X-NP", "B-", "b-np", "I-LST", "", "O-O"])
_SEPARATORS = st.sampled_from([" ", "\t", "  ", " \t"])


@st.composite
def conll_lines(draw):
  """A line: mostly `word POS chunk`, sometimes too few or many fields, blank, or garbage."""
  kind = draw(st.sampled_from(["token"] * 6 + ["blank", "fields", "garbage", "spaces"]))
  if kind == "blank":
    return ""
  if kind == "spaces":
    return draw(st.sampled_from([" ", "\t", "  \t "]))
  if kind == "garbage":
    return draw(st.text(max_size=40))
  sep = draw(_SEPARATORS)
  fields = [draw(_WORDS), draw(st.sampled_from(["NN", "DT", "$", "-LRB-", ""])), draw(_TAGS)]
  if kind == "fields":
    fields = fields[:draw(st.integers(0, 2))] + ["extra"] * draw(st.integers(0, 2))
  return sep.join(fields)


@st.composite
def conll_files(draw):
  """Raw bytes of a CoNLL-ish file: CRLF or LF, maybe a BOM, maybe invalid UTF-8, maybe a
  huge line, maybe gzip-compressed and maybe cut short."""
  lines = draw(st.lists(conll_lines(), max_size=30))
  if draw(st.booleans()):
    lines.insert(draw(st.integers(0, len(lines))), "word NN B-NP " * draw(st.integers(1, 2000)))
  text = (draw(st.sampled_from(["\n", "\r\n"]))).join(lines)
  raw = (b"\xef\xbb\xbf" if draw(st.booleans()) else b"") + text.encode("utf-8")
  if draw(st.integers(0, 9)) == 0:
    position = draw(st.integers(0, len(raw)))
    raw = raw[:position] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00\x81"])) + raw[position:]
  if draw(st.integers(0, 4)) == 0:
    raw = draw(st.binary(max_size=200))
  if draw(st.integers(0, 4)) == 0:
    raw = gzip.compress(raw)
    if draw(st.booleans()):
      raw = raw[:draw(st.integers(0, max(len(raw) - 1, 0)))]
  return raw


def _reference_parse(raw):
  """What a correct reader must return for valid input: fields split on white space."""
  text = raw.decode("utf-8").lstrip("\ufeff")
  sentences, current = [], []
  for line in text.split("\n"):
    fields = line.rstrip("\r").split()
    if fields:
      current.append(fields)
    elif current:
      sentences.append(current)
      current = []
  if current:
    sentences.append(current)
  return [TaggedSentence(words, {"pos": pos, "chunk": chunks})
          for words, pos, chunks in (map(tuple, zip(*s)) for s in sentences)]


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(conll_files())
def test_reader_loads_correctly_or_names_file_and_line(tmp_path_factory, raw):
  path = tmp_path_factory.mktemp("fuzz") / "input.txt"
  path.write_bytes(raw)
  try:
    sentences = read_conll(path)
  except DataError as e:
    message = str(e)
    assert "\n" not in message and message.startswith(str(path))
    match = re.match(re.escape(str(path)) + r":(\d+): ", message)
    if match:
      assert 1 <= int(match.group(1)) <= raw.count(b"\n") + 1 or raw[:2] == b"\x1f\x8b"
    return
  plain = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
  assert sentences == _reference_parse(plain)
  for s in sentences:
    assert all(re.fullmatch(r"O|[BI]-[A-Z]+", c) for c in s.tags["chunk"])


@pytest.mark.parametrize("name, content, message", [
    ("garbage", b"\x00\x01\x02\xff\xfe binary", "train.txt:1: not valid UTF-8"),
    ("truncated gzip", gzip.compress(b"the DT B-NP\n" * 500, mtime=0)[:60], "corrupt or truncated gzip"),
    ("tab-separated with a bad tag", b"the\tDT\tB-NP\ndog\tNN\tX-NP\n", "train.txt:2: column 3 (chunk): invalid span tag"),
    ("four columns", b"the DT B-NP extra\n", "train.txt:1: expected 3 columns"),
])
def test_train_binary_rejects_hostile_training_files_cleanly(tmp_path, name, content, message):
  del name
  data = tmp_path / "data"
  data.mkdir()
  (data / "train.txt").write_bytes(content)
  fixtures.write_conll(data / "test.txt", fixtures.synthetic_sentences(3, seed=0))
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}",
                      "--train_steps=5")
  assert message in error_line(result)
  assert not (tmp_path / "m").exists()


def test_eval_binary_names_a_bad_test_file(tmp_path):
  data = fixtures.write_dataset(tmp_path / "data", train=30, test=5)
  model_dir = tmp_path / "m"
  trained = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={model_dir}",
                       "--train_steps=5", "--word_dim=8", "--char_filters=4", "--hidden_size=8",
                       "--steps_per_loop=5", "--buckets=32", "--lm_vocab=0", *QUICK_TAGGER)
  assert trained.returncode == 0, trained.stderr
  (data / "test.txt.gz").write_bytes(gzip.compress(b"the DT B-NP\nend NN\n"))
  result = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={data}")
  assert "test.txt.gz:2: expected 3 columns" in error_line(result)


@pytest.mark.parametrize("flags, message", [
    (["--trace_graph", "--nosummaries"], "conflicts with --nosummaries"),
    (["--profile_steps=9,3"], "--profile_steps needs 0 <= A < B"),
    (["--skip_nonfinite_steps=-1"], "--skip_nonfinite_steps must be >= 0"),
    (["--epochs=0"], "--epochs must be positive"),
    (["--hidden_size=0"], "hidden_size must be a positive integer"),
    (["--num_layers=1"], "num_layers must be at least 2"),
    (["--dropout=1.5"], "dropout must be in [0, 1)"),
    (["--lr_decay_start=1.2"], "--lr_decay_start must be in [0, 1]"),
    (["--lr_final=-0.5"], "--lr_final must be in [0, 1]"),
    (["--average_decay=1"], "--average_decay must be in [0, 1)"),
    (["--sampler=sideways"], "flag --sampler=sideways"),
    (["--noper_task_optimizer"], "--noper_task_optimizer applies to --mode=alternate"),
    (["--init_from=/nonexistent"], "--init_from=/nonexistent is not a model directory"),
    (["--sampler=proportional"], "--sampler applies to --mode=alternate"),
    (["--mode=alternate", "--weighting=pcgrad"], "--weighting applies to --mode=joint"),
    (["--weighting=dwa", "--task_weights=1,2"], "conflict with --weighting=dwa"),
    (["--mode=alternate", "--sampler=temperature", "--sampler_temperature=0"],
     "--sampler_temperature must be positive"),
    (["--mode=alternate", "--sampler=proportional", "--task_weights=1,2"],
     "conflict with --sampler=proportional"),
])
def test_bad_or_conflicting_flags_fail_before_training(tmp_path, flags, message):
  data = fixtures.write_dataset(tmp_path / "data", train=30, test=5)
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}",
                      *flags)
  assert message in error_line(result)
  assert not list((tmp_path / "m").glob("**/*.index"))


def test_model_dir_that_is_a_file_fails_fast(tmp_path):
  data = fixtures.write_dataset(tmp_path / "data", train=30, test=5)
  (tmp_path / "file").write_text("not a directory")
  result = run_in_process(TRAIN, f"--data_dir={data}", f"--model_dir={tmp_path / 'file'}")
  assert "is not a writable directory" in error_line(result)


def test_eval_of_a_missing_model_dir_fails_with_one_line(tmp_path):
  result = run_in_process(EVAL, f"--model_dir={tmp_path / 'nothing'}")
  assert "config.json does not exist" in error_line(result)


@settings(max_examples=500, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(raw=conll_files(), which=st.sampled_from(["train", "test"]))
def test_mtl_train_loads_or_fails_cleanly_on_generated_files(tmp_path_factory, raw, which):
  """mtl-train's run (what its console entry point calls) on 500 generated train or test
  files: each either loads the data or raises an MtlError naming the file (which the binary
  prints as one line, exit 1), with nothing written to model_dir. Through run.train, the
  cheapest way in; the binary tests above check the printing and exit status."""
  from mtlcore.errors import MtlError  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import model_dir as model_dir_lib  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers import run  # pylint: disable=g-import-not-at-top
  from mtlcore.trainers.config import RunConfig  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("binary_fuzz")
  data = root / "data"
  data.mkdir()
  good = fixtures.conll_text(fixtures.synthetic_sentences(5, seed=0)).encode()
  (data / "train.txt").write_bytes(raw if which == "train" else good)
  (data / "test.txt").write_bytes(raw if which == "test" else good)
  model_dir = root / "model"
  config = RunConfig(task_set="conll2000", data_dir=str(data), model_dir=str(model_dir),
                     train_steps=1)

  class DataRead(Exception):
    pass

  def stop(self):
    raise DataRead  # The data was read; the run must not get this far with bad data.

  original = model_dir_lib.ModelDir.prepare
  model_dir_lib.ModelDir.prepare = stop
  try:
    run.train(config)
  except MtlError as e:
    assert "\n" not in str(e) and str(data) in str(e)
    assert not model_dir.exists()
  except DataRead:
    pass
  finally:
    model_dir_lib.ModelDir.prepare = original
