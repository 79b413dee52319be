"""mtl-eval and mtl-tag as guarded as mtl-train: every config.json shape is one line naming the
file and field; every flag is applied (--test=FILE, --tasks) or refused in one line, never
ignored; a model directory is only read. In-process (tests.binaries.run_in_process)."""

import json
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtlcore.trainers.config import RunConfig
from tests import fixtures
from tests.binaries import EVAL, QUICK_TAGGER, TAG, TRAIN, error_line, run_in_process
from tests.test_files import tree_digest

TINY = ["--word_dim=8", "--char_filters=4", "--hidden_size=8", "--lm_vocab=0",
        "--buckets=16,32", "--steps_per_loop=10", "--nosummaries", "--train_steps=20",
        "--eval_every=10", *QUICK_TAGGER]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
  """A tagging run of POS and chunking with a test file, and a second file of other
  sentences (other.txt, 7 of them) to score instead."""
  root = tmp_path_factory.mktemp("tagging")
  fixtures.write_columns(root / "train.txt", fixtures.synthetic_sentences(40, seed=0))
  fixtures.write_columns(root / "test.txt", fixtures.synthetic_sentences(10, seed=1))
  fixtures.write_columns(root / "other.txt", fixtures.synthetic_sentences(7, seed=2))
  result = run_in_process(TRAIN, "--task_set=tagging", "--columns=word,pos,chunk", *TINY,
                          f"--data_dir={root}", "--train=train.txt", "--test=test.txt",
                          f"--model_dir={root / 'm'}")
  assert result.returncode == 0, result.stderr
  return root


def _eval(run_dir, *args):
  return run_in_process(EVAL, f"--model_dir={run_dir / 'm'}", f"--data_dir={run_dir}", *args)


def _metrics(result):
  return dict((k, float(v)) for k, v in (line.split() for line in result.stdout.splitlines()[2:]))


def test_test_file_and_tasks_flags_are_applied(run_dir, tmp_path):
  default = _eval(run_dir)
  assert default.returncode == 0, default.stderr
  other = _eval(run_dir, "--test=other.txt", f"--output={tmp_path / 'p'}")
  assert other.returncode == 0, other.stderr
  assert _metrics(other) != _metrics(default)  # Another file was scored ...
  predictions = (tmp_path / "p" / "pos.txt").read_text()
  assert predictions.count("\n\n") == 7  # ... the 7 sentences of other.txt.
  pos_only = _eval(run_dir, "--tasks=pos")
  assert pos_only.returncode == 0, pos_only.stderr
  assert set(_metrics(pos_only)) == {"pos/accuracy"}
  assert _metrics(pos_only)["pos/accuracy"] == _metrics(default)["pos/accuracy"]


@pytest.mark.parametrize("flag, words", [
    ("--task_set=toy", "holds a run of --task_set=tagging; mtl-eval scores a model with the "
                       "task set it was trained with"),
    ("--tasks=ner", "the run trained ['pos', 'chunk'], not ['ner']"),
    ("--trunk=bilstm", "--trunk cannot change the model"),
    ("--task_set_options=hidden_size=4", "--hidden_size cannot change the model"),
    ("--learning_rate=0.1", "--learning_rate does not apply to mtl-eval"),
    ("--export_dir=x", "--export_dir does not apply to mtl-eval"),
])
def test_a_flag_that_cannot_apply_is_one_line_and_nothing_is_written(run_dir, flag, words):
  before = tree_digest(run_dir)
  assert words in error_line(_eval(run_dir, flag))
  assert tree_digest(run_dir) == before


def test_conll2000_takes_no_other_test_file(tmp_path):
  data = fixtures.write_dataset(tmp_path / "data", train=30, test=5)
  trained = run_in_process(TRAIN, *TINY, f"--data_dir={data}", f"--model_dir={tmp_path / 'm'}",
                           "--train_steps=10")
  assert trained.returncode == 0, trained.stderr
  line = error_line(run_in_process(EVAL, f"--model_dir={tmp_path / 'm'}",
                                   f"--data_dir={data}", "--test=x.txt"))
  assert "Unknown command line flag 'test'" in line  # conll2000 declares no --test.


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-3, 3) | st.floats(allow_nan=True)
                     | st.text(max_size=5), lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
_FIELDS = [f for f in RunConfig.__dataclass_fields__ if f != "model_dir"]


@st.composite
def _broken_configs(draw, stored):
  """config.json shapes: another JSON value, a field removed, or fields given wrong values."""
  kind = draw(st.sampled_from(["value", "missing", "fields"]))
  if kind == "value":
    return draw(_JSON.filter(lambda v: not isinstance(v, dict)))
  config = dict(stored)
  if kind == "missing":
    del config[draw(st.sampled_from(sorted(config)))]
    return config
  for name in draw(st.lists(st.sampled_from(_FIELDS), min_size=1, max_size=3, unique=True)):
    config[name] = draw(_JSON)
  return config


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_every_config_json_shape_is_one_line_or_a_clean_run(run_dir, tmp_path, data):
  model_dir = tmp_path / "m"
  if model_dir.exists():
    shutil.rmtree(model_dir)
  shutil.copytree(run_dir / "m", model_dir)
  stored = json.loads((model_dir / "config.json").read_text())
  broken = data.draw(_broken_configs(stored))
  (model_dir / "config.json").write_text(json.dumps(broken))
  before = tree_digest(model_dir)
  result = run_in_process(EVAL, f"--model_dir={model_dir}", f"--data_dir={run_dir}")
  if result.returncode:
    line = error_line(result)
    assert "config.json" in line or "--" in line, line
  assert tree_digest(model_dir) == before


@pytest.mark.parametrize("flag, words", [
    ("--batch_size=0", "--batch_size must be positive, got 0"),
    ("--trunk=conv", "Unknown command line flag 'trunk'"),
])
def test_tag_refuses_a_zero_batch_and_flags_it_does_not_read(tmp_path, flag, words):
  assert words in error_line(run_in_process(TAG, f"--model={tmp_path}", flag, stdin="a b\n"))
