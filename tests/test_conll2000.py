"""Tests of the CoNLL-2000 reader, locator and splits."""

import gzip

import pytest

from mtlcore.tagging import columns, conll2000
from mtlcore.errors import ConfigError, DataError
from tests import fixtures


def test_reads_plain_and_gzip_files_alike(tmp_path):
  sentences = fixtures.synthetic_sentences(5, seed=0)
  plain = conll2000.read_conll(fixtures.write_conll(tmp_path / "a.txt", sentences))
  zipped = conll2000.read_conll(fixtures.write_conll(tmp_path / "a.txt.gz", sentences))
  assert plain == zipped
  assert len(plain) == 5
  assert plain[0].words == tuple(w for w, _, _ in sentences[0])
  assert plain[0].tags["chunk"] == tuple(c for _, _, c in sentences[0])


def test_accepts_crlf_bom_tabs_and_missing_final_blank_line(tmp_path):
  path = tmp_path / "x.txt"
  path.write_bytes(b"\xef\xbb\xbfHe\tPRP\tB-NP\r\nruns VBZ B-VP\r\n\r\nOk UH B-INTJ")
  sentences = conll2000.read_conll(path)
  assert [s.words for s in sentences] == [("He", "runs"), ("Ok",)]
  assert sentences[0].tags["pos"] == ("PRP", "VBZ")


@pytest.mark.parametrize("content, line, message", [
    (b"He PRP B-NP\nruns VBZ\n", 2, "expected 3 columns"),
    (b"He PRP B-NP extra\n", 1, "expected 3 columns"),
    (b"He PRP B-NP\n\nruns VBZ X-NP\n", 3, "column 3 \\(chunk\\): invalid span tag 'X-NP'"),
    (b"He PRP B-\n", 1, "invalid span tag"),
    (b"He PRP B-NP\nr\xffns VBZ B-VP\n", 2, "not valid UTF-8"),
])
def test_malformed_lines_are_named_by_file_and_line(tmp_path, content, line, message):
  path = tmp_path / "bad.txt"
  path.write_bytes(content)
  with pytest.raises(DataError, match=message) as info:
    conll2000.read_conll(path)
  assert str(info.value).startswith(f"{path}:{line}: ")


@pytest.mark.parametrize("content", [b"", b"\n\n  \n"])
def test_files_without_sentences_are_errors(tmp_path, content):
  path = tmp_path / "empty.txt"
  path.write_bytes(content)
  with pytest.raises(DataError, match="no sentences"):
    conll2000.read_conll(path)


def test_truncated_gzip_is_an_error(tmp_path):
  path = tmp_path / "t.txt.gz"
  path.write_bytes(gzip.compress(b"He PRP B-NP\n" * 100)[:40])
  with pytest.raises(DataError, match="corrupt or truncated gzip"):
    conll2000.read_conll(path)


def test_missing_file_is_an_error(tmp_path):
  with pytest.raises(DataError, match="no such file"):
    conll2000.read_conll(tmp_path / "nope.txt")


def test_locate_prefers_the_flag_then_the_environment(tmp_path, monkeypatch):
  flag_dir = fixtures.write_dataset(tmp_path / "flag")
  env_dir = fixtures.write_dataset(tmp_path / "env")
  monkeypatch.setenv(conll2000.DATA_DIR_ENV, str(env_dir))
  assert conll2000.locate("train", str(flag_dir)) == str(flag_dir / "train.txt.gz")
  assert conll2000.locate("test") == str(env_dir / "test.txt.gz")


def test_locate_names_the_setting_that_points_nowhere(tmp_path, monkeypatch):
  monkeypatch.setenv(conll2000.DATA_DIR_ENV, str(tmp_path / "missing"))
  with pytest.raises(ConfigError, match="MTL_DATA_DIR=.* is not a directory"):
    conll2000.locate("train")
  (tmp_path / "empty").mkdir()
  with pytest.raises(ConfigError, match="--data_dir=.* holds neither train.txt.gz"):
    conll2000.locate("train", str(tmp_path / "empty"))


def test_without_local_data_or_network_the_error_says_what_to_set(tmp_path, monkeypatch):
  monkeypatch.delenv(conll2000.DATA_DIR_ENV, raising=False)
  monkeypatch.setenv(conll2000.CACHE_DIR_ENV, str(tmp_path / "cache"))
  monkeypatch.setattr(conll2000, "BASE_URLS", ("http://127.0.0.1:9/conll2000/",))
  with pytest.raises(ConfigError, match="could not be downloaded.*--data_dir=DIR or set "
                     "MTL_DATA_DIR=DIR"):
    conll2000.locate("train")
  assert not list((tmp_path / "cache").glob("*.gz"))


def test_download_is_verified_and_written_atomically(tmp_path, monkeypatch):
  """A served file with the wrong counts is rejected and leaves no file in the cache."""
  (tmp_path / "served").mkdir()
  fixtures.write_conll(tmp_path / "served" / "train.txt.gz", fixtures.synthetic_sentences(3, seed=0))
  monkeypatch.delenv(conll2000.DATA_DIR_ENV, raising=False)
  monkeypatch.setenv(conll2000.CACHE_DIR_ENV, str(tmp_path / "cache"))
  monkeypatch.setattr(conll2000, "BASE_URLS", ((tmp_path / "served").as_uri() + "/",))
  with pytest.raises(DataError, match="should have 8936 sentences and 211727 tokens, found 3"):
    conll2000.locate("train")
  assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".gz")]


def test_dev_split_is_carved_from_the_end_of_train(tmp_path):
  splits = conll2000.load_splits(str(fixtures.write_dataset(tmp_path, train=50, test=10)))
  everything = conll2000.read_conll(tmp_path / "train.txt.gz")
  assert len(splits.dev) == 10 and splits.train + splits.dev == everything
  assert columns.dev_size(8936) == 1000


def test_real_files_have_the_published_counts(real_conll_dir):
  directory = real_conll_dir
  for split in ("train", "test"):
    conll2000.verify(conll2000.read_conll(conll2000.locate(split, directory)), split, directory)
