"""Column files: CoNLL-style sequence-labelling data with any number of label columns.

The format: one token per line, fields separated by white space, a blank line between
sentences; lines starting with `-DOCSTART-` are skipped (they end a sentence); files may be
plain or gzip-compressed UTF-8 (a byte-order mark and Windows line ends are accepted). The
user declares the columns by name, e.g. ("word", "pos", "chunk", "ner"); "word" is the token
and every other column is a task's labels.

A file read for some of the tasks holds either every declared column, or the word column and
just those tasks' columns, in declared order (so a POS-only corpus may be `word pos`). A label
equal to the declared placeholder (e.g. "_") is missing; a task whose column the file lacks, or
that the file is not read for, has no labels in its sentences.

Span columns (BIO/IOB/BIOES tags, scored as conlleval does) must hold only O and
PREFIX-TYPE with PREFIX one of B, I, E, S. Every error is a DataError naming the file, the line
and the column.

Sentence labels: with `sentence_tasks` declared, a line of exactly the four fields
`# NAME = LABEL` (CoNLL-U's comment syntax) with a declared NAME, before a sentence's first
token, gives that sentence the label LABEL for task NAME; a sentence without one has it
missing. No other line is a comment: CoNLL-2000 has token lines that start with `# `
(`# # I-NP`), and without sentence tasks every line is read as before.
"""

import dataclasses
import gzip
import re
import zlib

from mtlcore.errors import DataError

WORD = "word"
DOCSTART = "-DOCSTART-"
_SPAN_TAG = re.compile(r"^(O|[BIES]-\S+)$")
_SPAN_PREFIX = re.compile(r"^[BIES]-")
DEV_SENTENCES = 1000


@dataclasses.dataclass(frozen=True)
class TaggedSentence:
  """One sentence: its words, and per task with labels in it, one tag or None (missing) per
  word. A task not in `tags` has no label anywhere in the sentence. `sentence_labels`: per
  sentence task with a label for this sentence, that label."""
  words: tuple
  tags: dict
  sentence_labels: dict = dataclasses.field(default_factory=dict)

  def __len__(self):
    return len(self.words)

  def labels(self, task):
    """The tags of `task` (None where missing), all None if the sentence has none."""
    return self.tags.get(task, (None,) * len(self.words))

  def fully_labelled(self, task):
    return task in self.tags and None not in self.tags[task]

  def piece(self, start, stop):
    """The words start..stop-1 with their tags (and the sentence's labels)."""
    return TaggedSentence(self.words[start:stop],
                          {t: tags[start:stop] for t, tags in self.tags.items()},
                          dict(self.sentence_labels))


def is_span_tag(tag):
  """O or B-/I-/E-/S-TYPE."""
  return bool(_SPAN_TAG.match(tag))


def looks_like_span_column(tags):
  """A column is read as span tags if any of its tags starts with B-, I-, E- or S-."""
  return any(_SPAN_PREFIX.match(t) for t in tags)


def read_bytes(path):
  """The file's bytes, gunzipped if it is gzip; DataError naming the file otherwise."""
  try:
    with open(path, "rb") as f:
      raw = f.read()
  except FileNotFoundError:
    raise DataError(path, None, "no such file.") from None
  except IsADirectoryError:
    raise DataError(path, None, "is a directory, not a column file.") from None
  except PermissionError:
    raise DataError(path, None, "permission denied.") from None
  if raw[:2] == b"\x1f\x8b":
    try:
      return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
      raise DataError(path, None, f"corrupt or truncated gzip file ({e}).") from None
  return raw


def _lines(raw, path):
  """(line number, fields) per line; fields is [] for a blank line."""
  if raw.startswith(b"\xef\xbb\xbf"):
    raw = raw[3:]
  for number, line in enumerate(raw.split(b"\n"), 1):
    try:
      text = line.decode("utf-8").rstrip("\r")
    except UnicodeDecodeError as e:
      raise DataError(path, number, f"not valid UTF-8 (byte {e.start + 1}).") from None
    fields = text.split()
    if not fields and text and not text.isspace():
      raise DataError(path, number, "unexpected characters on a blank line.")
    yield number, fields


def _sentence_label(fields, sentence_tasks):
  """(task, label) of a `# NAME = LABEL` line of a declared sentence task, else None."""
  if (sentence_tasks and len(fields) == 4 and fields[0] == "#" and fields[2] == "="
      and fields[1] in sentence_tasks):
    return fields[1], fields[3]
  return None


def parse_columns(raw, path, *, columns, tasks, placeholder=None, span_tasks=(),
                  sentence_tasks=()):
  """Parses column-file bytes into a list of TaggedSentence labelled for `tasks`.

  Args:
    raw: the file's bytes (UTF-8).
    path: the name used in errors.
    columns: every declared column name, "word" among them.
    tasks: the label columns this file is read for (a subset of columns).
    placeholder: the string that marks a missing label, or None.
    span_tasks: tasks whose tags must be span tags.
    sentence_tasks: the declared sentence tasks; those in `tasks` take their labels from
      `# NAME = LABEL` lines before a sentence (the placeholder marks one missing).
  Raises:
    DataError naming path, line and column.
  """
  columns, tasks = tuple(columns), tuple(tasks)
  own = tuple(c for c in columns if c == WORD or c in tasks)
  layouts = {len(columns): columns, len(own): own}
  described = " or ".join(f"{n} columns ({' '.join(c)})"
                          for n, c in sorted(layouts.items(), reverse=True))
  layout, sentences, rows, first_line = None, [], [], None
  declared = tuple(sentence_tasks)
  labels, label_line = {}, None  # Sentence labels read for the next sentence.

  def close():
    nonlocal label_line
    if rows:
      sentence = _sentence(rows, layout, tasks, placeholder, span_tasks, path, first_line)
      own = {t: v for t, v in labels.items() if t in tasks and v != placeholder}
      sentences.append(dataclasses.replace(sentence, sentence_labels=own))
      rows.clear()
      labels.clear()
      label_line = None

  for number, fields in _lines(raw, path):
    comment = _sentence_label(fields, declared)
    if comment is not None:
      task, label = comment
      if rows:
        raise DataError(path, number, f"the sentence label of {task!r} is inside a sentence; "
                        f"put '# {task} = LABEL' before the sentence's first token.")
      if task in labels:
        raise DataError(path, number, f"a second label of {task!r} for the same sentence.")
      labels[task], label_line = label, number
      continue
    if not fields or fields[0] == DOCSTART:
      close()
      continue
    if layout is None:
      if len(fields) not in layouts:
        raise DataError(path, number, f"expected {described}, found {len(fields)}: "
                        f"{' '.join(fields)[:60]!r}.")
      layout = layouts[len(fields)]
    elif len(fields) != len(layout):
      raise DataError(path, number, f"expected {len(layout)} columns ({' '.join(layout)}) as "
                      f"on the file's first line, found {len(fields)}: "
                      f"{' '.join(fields)[:60]!r}.")
    if not rows:
      first_line = number
    rows.append(fields)
  close()
  if labels:
    raise DataError(path, label_line, "a sentence label with no sentence after it.")
  if not sentences:
    raise DataError(path, None, "no sentences: the file is empty or holds only blank lines.")
  return sentences


def _sentence(rows, layout, tasks, placeholder, span_tasks, path, first_line):
  by_column = dict(zip(layout, zip(*rows)))
  tags = {}
  for task in tasks:
    if task not in by_column:
      continue
    values = by_column[task]
    if task in span_tasks:
      for i, tag in enumerate(values):
        if tag != placeholder and not is_span_tag(tag):
          hint = ""
          if placeholder:
            hint = f" (a missing label must be the placeholder {placeholder!r})"
          elif not re.search(r"[^\W_]", tag):  # Looks like a placeholder: _, -, ?, ...
            hint = "; declare a placeholder for missing labels if that is one"
          raise DataError(path, first_line + i,
                          f"column {layout.index(task) + 1} ({task}): invalid span tag "
                          f"{tag[:30]!r}; expected O or B-, I-, E-, S-TYPE{hint}.")
    tags[task] = tuple(None if v == placeholder else v for v in values)
  return TaggedSentence(by_column[WORD], tags)


def read_column_file(path, *, columns, tasks, placeholder=None, span_tasks=(),
                     sentence_tasks=()):
  """Reads a column file (plain or gzip) into a list of TaggedSentence; see parse_columns."""
  return parse_columns(read_bytes(path), path, columns=columns, tasks=tasks,
                       placeholder=placeholder, span_tasks=span_tasks,
                       sentence_tasks=sentence_tasks)


def dev_size(num_sentences):
  """How many sentences a dev split takes from the end of a training file that has none of
  its own: 1,000 (CoNLL-2000's), or a fifth of smaller files (at least 1, leaving at least 1
  for training); 0 below 2 sentences."""
  if num_sentences < 2:
    return 0
  return max(1, min(DEV_SENTENCES, num_sentences // 5))
