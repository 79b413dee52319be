"""Vocabularies built from the training split, and the Featurizer that applies them in-graph.

Word ids: 0 is padding, 1 the unknown word; words are normalised (lower-cased, digits mapped
to 0) and kept if seen at least `min_count` times. Character ids: 0 padding, 1 unknown;
characters keep their case (capitalisation reaches the model through them). Tag vocabularies
have no padding or unknown entry: a tag never seen in training (e.g. I-LST, which only the
test file has) gets the id `len(tags)`, which no head predicts and every loss ignores; a
missing label gets MISSING (-1), which every loss and metric ignores too.

The Featurizer holds the lookup tables as tf.lookup tables, so the tf.data pipeline and the
exported SavedModel map raw strings to ids with the same code and no vocabulary files.
"""

import collections
import dataclasses
import json

import tensorflow as tf

from mtlcore.errors import ConfigError, DataError, require_positive
from mtlcore.files import write_json_atomically

PAD, UNK = 0, 1
MISSING = -1  # The label id of a token whose label is missing (no loss, no metric).


def normalize_word(word):
  """The word-vocabulary key of a token: lower-cased, every digit replaced by 0."""
  return "".join("0" if c.isdigit() else c for c in word.lower())


@dataclasses.dataclass(frozen=True)
class Vocabularies:
  """words and chars: entries from id 2 on (0 and 1 are padding and unknown);
  tags: task name -> tag strings, id = position."""
  words: tuple
  chars: tuple
  tags: dict
  _tag_index: dict = dataclasses.field(default_factory=dict, init=False, repr=False,
                                       compare=False)

  @classmethod
  def build(cls, sentences, tasks, *, min_word_count=2, min_char_count=1, sentence_tasks=()):
    """Builds the vocabularies from training sentences (mtlcore.tagging.columns.TaggedSentence):
    words and characters from all of them, each task's tags from its labels (missing ones
    left out), each sentence task's labels from the sentences' labels."""
    require_positive("min_word_count", min_word_count)
    words = collections.Counter(normalize_word(w) for s in sentences for w in s.words)
    chars = collections.Counter(c for s in sentences for w in s.words for c in w)
    keep = lambda counter, n: tuple(sorted(k for k, c in counter.items() if c >= n))
    tags = {task: tuple(sorted({t for s in sentences for t in s.tags.get(task, ())
                                if t is not None})) for task in tasks}
    tags.update({task: tuple(sorted({s.sentence_labels[task] for s in sentences
                                     if task in s.sentence_labels}))
                 for task in sentence_tasks})
    return cls(words=keep(words, min_word_count), chars=keep(chars, min_char_count), tags=tags)

  def tag_ids(self, task, tags):
    """Maps tag strings to ids: unseen tags get len(vocabulary), missing ones (None)
    MISSING."""
    if task not in self._tag_index:  # Built once per task: the LM task's list is long.
      self._tag_index[task] = {t: i for i, t in enumerate(self.tags[task])}
    index = self._tag_index[task]
    return [MISSING if t is None else index.get(t, len(index)) for t in tags]

  def save(self, path):
    """Writes JSON atomically."""
    write_json_atomically(path, {"words": self.words, "chars": self.chars, "tags": self.tags},
                          ensure_ascii=False)

  @classmethod
  def load(cls, path):
    try:
      with open(path, encoding="utf-8") as f:
        data = json.load(f)
      return cls(words=tuple(data["words"]), chars=tuple(data["chars"]),
                 tags={k: tuple(v) for k, v in data["tags"].items()})
    except FileNotFoundError:
      raise ConfigError(f"{path}: no vocabulary file; is this a model directory written by "
                        f"mtl-train?") from None
    except (ValueError, KeyError, TypeError) as e:
      raise DataError(path, None, f"unreadable vocabulary file ({e}).") from None


class Featurizer(tf.Module):
  """Maps string tokens to model features, in-graph.

  `__call__(tokens)`: tokens string [..., T] ("" is padding) ->
    {"words": int32 [..., T], "chars": int32 [..., T, max_word_chars]}.
  Words longer than `max_word_chars` characters keep their first max_word_chars characters.
  """

  def __init__(self, vocabularies, *, max_word_chars=20, name=None):
    super().__init__(name=name)
    self.max_word_chars = require_positive("max_word_chars", max_word_chars)
    self.num_words = len(vocabularies.words) + 2
    self.num_chars = len(vocabularies.chars) + 2
    self._word_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(vocabularies.words or ("",), tf.string),
            tf.range(2, 2 + max(len(vocabularies.words), 1), dtype=tf.int32)), default_value=UNK)
    codepoints = [ord(c) for c in vocabularies.chars if len(c) == 1] or [0]
    self._char_table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(
            tf.constant(codepoints, tf.int32), tf.range(2, 2 + len(codepoints), dtype=tf.int32)),
        default_value=UNK)

  def normalize(self, tokens):
    """In-graph normalize_word: lower-case (Unicode-aware), digits to 0."""
    lowered = tf.strings.lower(tokens, encoding="utf-8")
    return tf.strings.regex_replace(lowered, r"\d", "0")

  def __call__(self, tokens):
    is_token = tf.not_equal(tokens, "")
    words = tf.where(is_token, self._word_table.lookup(self.normalize(tokens)), PAD)
    codepoints = tf.strings.unicode_decode(tokens, "UTF-8", errors="replace")
    char_ids = tf.ragged.map_flat_values(self._char_table.lookup, codepoints)
    shape = tf.concat([tf.shape(tokens), [self.max_word_chars]], axis=0)
    chars = char_ids.to_tensor(default_value=PAD, shape=shape)
    return {"words": words, "chars": chars}
