"""Small CoNLL-format data that the tests write themselves (never the real corpus)."""

import gzip

import numpy as np

# A tiny grammar: sentences are sequences of phrases, each phrase a list of (word, POS, type).
_PHRASES = [
    [("the", "DT"), ("old", "JJ"), ("dog", "NN")],
    [("a", "DT"), ("cat", "NN")],
    [("John", "NNP")],
    [("prices", "NNS")],
    [("barks", "VBZ")],
    [("will", "MD"), ("rise", "VB")],
    [("has", "VBZ"), ("been", "VBN"), ("sold", "VBN")],
    [("in", "IN")],
    [("on", "IN")],
    [("quickly", "RB")],
]
_TYPES = ["NP", "NP", "NP", "NP", "VP", "VP", "VP", "PP", "PP", "ADVP"]


def synthetic_sentences(num_sentences, *, seed, min_phrases=2, max_phrases=8):
  """Random sentences as lists of (word, POS, chunk) triples, with a final '.'."""
  rng = np.random.default_rng(seed)
  sentences = []
  for _ in range(num_sentences):
    rows = []
    for _ in range(rng.integers(min_phrases, max_phrases + 1)):
      k = rng.integers(len(_PHRASES))
      for j, (word, pos) in enumerate(_PHRASES[k]):
        rows.append((word, pos, ("B-" if j == 0 else "I-") + _TYPES[k]))
    rows.append((".", ".", "O"))
    sentences.append(rows)
  return sentences


def conll_text(sentences):
  return "".join("".join(f"{w} {p} {c}\n" for w, p, c in s) + "\n" for s in sentences)


def write_conll(path, sentences, *, compress=None):
  """Writes sentences in CoNLL-2000 format; gzip-compressed if the name ends in .gz."""
  data = conll_text(sentences).encode("utf-8")
  compress = str(path).endswith(".gz") if compress is None else compress
  with open(path, "wb") as f:
    f.write(gzip.compress(data) if compress else data)
  return path


def write_dataset(directory, *, train=120, test=40, seed=0):
  """A data_dir with train.txt.gz and test.txt.gz of synthetic sentences."""
  directory.mkdir(parents=True, exist_ok=True)
  write_conll(directory / "train.txt.gz", synthetic_sentences(train, seed=seed))
  write_conll(directory / "test.txt.gz", synthetic_sentences(test, seed=seed + 1))
  return directory
