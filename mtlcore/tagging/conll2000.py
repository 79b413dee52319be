"""CoNLL-2000 chunking data: read it, find it, download and verify it.

The format is the column format of mtlcore.tagging.columns with three columns, `word POS chunk`;
files may be plain or gzip-compressed UTF-8. Any malformed line raises a DataError naming the
file, line and column.

Where the data comes from, in order: an explicit directory (the `--data_dir` flag), the
MTL_DATA_DIR environment variable, then a cache directory (MTL_CACHE_DIR, default
~/.cache/mtlcore/conll2000) that is filled on first use by downloading the shared task's
files and checking their sentence and token counts.
"""

import dataclasses
import gzip
import os
import tempfile
import urllib.error
import urllib.request
import zlib

from mtlcore.tagging import columns
from mtlcore.errors import ConfigError, DataError

DATA_DIR_ENV = "MTL_DATA_DIR"
CACHE_DIR_ENV = "MTL_CACHE_DIR"
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "mtlcore", "conll2000")
BASE_URLS = ("https://www.clips.uantwerpen.be/conll2000/chunking/",
             "http://www.clips.uantwerpen.be/conll2000/chunking/")
# Published sizes of the shared task's files: (sentences, tokens).
EXPECTED_COUNTS = {"train": (8936, 211727), "test": (2012, 47377)}
FILES = {"train": "train.txt.gz", "test": "test.txt.gz"}

COLUMNS = ("word", "pos", "chunk")
TASKS = ("pos", "chunk")


def parse_conll(raw, path="<bytes>"):
  """Parses CoNLL-2000 text (bytes, UTF-8) into a list of mtlcore.tagging.columns.TaggedSentence
  labelled for "pos" and "chunk".

  Raises DataError naming `path`, the line and the column for: a line that is not UTF-8, a
  line without exactly three fields, a chunk tag that is not O or B-, I-, E-, S-TYPE; and for
  input with no sentence at all.
  """
  return columns.parse_columns(raw, path, columns=COLUMNS, tasks=TASKS, span_tasks=("chunk",))


def read_conll(path):
  """Reads a CoNLL-2000 file (plain or gzip); see parse_conll."""
  path = os.fspath(path)
  return parse_conll(columns.read_bytes(path), path)


def count(sentences):
  """(number of sentences, number of tokens)."""
  return len(sentences), sum(len(s) for s in sentences)


def _find_split_file(directory, split):
  for name in (FILES[split], FILES[split][:-len(".gz")]):
    path = os.path.join(directory, name)
    if os.path.isfile(path):
      return path
  return None


def _download(split, cache_dir):
  """Downloads one split into cache_dir atomically, after checking its counts."""
  os.makedirs(cache_dir, exist_ok=True)
  errors = []
  for base in BASE_URLS:
    url = base + FILES[split]
    try:
      with urllib.request.urlopen(url, timeout=60) as response:
        raw = response.read()
      break
    except (urllib.error.URLError, OSError) as e:
      errors.append(f"{url}: {getattr(e, 'reason', e)}")
  else:
    raise ConfigError(
        f"CoNLL-2000 {split} data is not available locally and could not be downloaded "
        f"({'; '.join(errors)}). Download train.txt.gz and test.txt.gz from "
        f"{BASE_URLS[0]} into a directory and pass --data_dir=DIR or set {DATA_DIR_ENV}=DIR.")
  verify(parse_conll(_decompress_download(raw, url), url), split, url)
  fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=f".{split}.", suffix=".part")
  with os.fdopen(fd, "wb") as f:
    f.write(raw)
  path = os.path.join(cache_dir, FILES[split])
  os.replace(tmp, path)
  return path


def _decompress_download(raw, url):
  try:
    return gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
  except (OSError, EOFError, zlib.error) as e:
    raise DataError(url, None, f"download is not a valid gzip file ({e}).") from None


def verify(sentences, split, source):
  """Raises DataError unless `sentences` has the published counts of CoNLL-2000 `split`."""
  got, want = count(sentences), EXPECTED_COUNTS[split]
  if got != want:
    raise DataError(source, None, f"CoNLL-2000 {split} should have {want[0]} sentences and "
                    f"{want[1]} tokens, found {got[0]} and {got[1]}.")


def locate(split, data_dir=None):
  """Path of `split` ("train" or "test"): from data_dir, MTL_DATA_DIR, or the cache.

  An explicit directory (argument or environment) must hold the file; it is not checked
  against the published counts, so small data in the same format can be used. The cache is
  filled by downloading, and what is downloaded is checked.
  """
  if split not in FILES:
    raise ConfigError(f"Unknown CoNLL-2000 split {split!r}; expected one of {list(FILES)}.")
  for directory, origin in ((data_dir, "--data_dir"), (os.environ.get(DATA_DIR_ENV),
                                                       DATA_DIR_ENV)):
    if directory:
      if not os.path.isdir(directory):
        raise ConfigError(f"{origin}={directory} is not a directory.")
      path = _find_split_file(directory, split)
      if path is None:
        raise ConfigError(f"{origin}={directory} holds neither {FILES[split]} nor "
                          f"{FILES[split][:-3]}.")
      return path
  cache_dir = os.path.expanduser(os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR)
  return _find_split_file(cache_dir, split) or _download(split, cache_dir)


@dataclasses.dataclass(frozen=True)
class Splits:
  """train (minus dev), dev (the last sentences of the training file) and test."""
  train: list
  dev: list
  test: list
  train_path: str
  test_path: str


def load_splits(data_dir=None):
  """Reads train and test and carves the dev split from the end of train."""
  train_path, test_path = locate("train", data_dir), locate("test", data_dir)
  train = read_conll(train_path)
  n_dev = columns.dev_size(len(train))
  if n_dev == 0:
    raise DataError(train_path, None, "needs at least 2 sentences (one to train, one for dev).")
  return Splits(train=train[:-n_dev], dev=train[-n_dev:], test=read_conll(test_path),
                train_path=train_path, test_path=test_path)
