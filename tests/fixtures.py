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


def with_ner(sentence):
  """A sentence's (word, POS, chunk) rows with a BIOES NER column added: "John" is S-PER, an NP
  chunk holding "cat" or "dog" an ANI span (B-ANI ... E-ANI, or S-ANI), the rest O."""
  rows, ner = list(sentence), ["O"] * len(sentence)
  starts = [i for i, (_, _, c) in enumerate(rows) if not c.startswith("I-")] + [len(rows)]
  for start, stop in zip(starts, starts[1:]):
    words = [w for w, _, _ in rows[start:stop]]
    if rows[start][2] == "B-NP" and ({"cat", "dog"} & set(words)):
      n = stop - start
      ner[start:stop] = ["S-ANI"] if n == 1 else ["B-ANI"] + ["I-ANI"] * (n - 2) + ["E-ANI"]
  ner = ["S-PER" if w == "John" else t for (w, _, _), t in zip(rows, ner)]
  return [(*row, t) for row, t in zip(rows, ner)]


def write_columns(path, sentences, *, keep=None, docstart=False):
  """Writes rows of fields as a column file; `keep` picks the fields (by index) to write, and
  `docstart` starts the file with a -DOCSTART- line."""
  lines = ["-DOCSTART- -X- O\n\n"] if docstart else []
  for s in sentences:
    lines += [" ".join(r[i] for i in (keep or range(len(r)))) + "\n" for r in s] + ["\n"]
  with open(path, "w", encoding="utf-8") as f:
    f.writelines(lines)
  return path
