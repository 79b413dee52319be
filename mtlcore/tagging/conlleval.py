"""Evaluation metrics: token accuracy and the CoNLL `conlleval` chunk scorer, exactly.

Chunks are read from IOB1/IOB2 tags exactly as conlleval.pl reads them: a chunk starts on any
B- tag, on an I- tag after O, and on any change of type; it ends before a B- or O tag and
before a change of type. BIOES tags follow the usual extension of those rules (conlleval.pl
has no S- tag): a chunk also starts on S-, and on I- or E- after an E- or S-; it ends after
every E- or S- and before an S-. A predicted chunk is correct only if its start, end and type all match a gold chunk.
Precision, recall and F1 are percentages; F1 is 0 when precision + recall is 0, as conlleval.
"""

import collections


def _split_tag(tag):
  """'B-NP' -> ('B', 'NP'); 'O' -> ('O', '')."""
  if tag == "O":
    return "O", ""
  prefix, _, chunk_type = tag.partition("-")
  return prefix, chunk_type


def _chunk_ends(prev_tag, tag, prev_type, chunk_type):
  """conlleval's endOfChunk: does a chunk end between prev and this token?"""
  if prev_tag in ("E", "S"):
    return True
  if prev_tag in ("B", "I") and tag in ("B", "S", "O"):
    return True
  return prev_tag != "O" and prev_type != chunk_type


def _chunk_starts(prev_tag, tag, prev_type, chunk_type):
  """conlleval's startOfChunk: does a chunk start at this token?"""
  if tag in ("B", "S"):
    return True
  if prev_tag in ("E", "S", "O") and tag in ("I", "E"):
    return True
  return tag != "O" and prev_type != chunk_type


def chunk_spans(tags):
  """The chunks of one sentence's IOB tags as a set of (start, end inclusive, type)."""
  spans, start, current_type = set(), None, ""
  prev_tag, prev_type = "O", ""
  for i, full in enumerate(list(tags) + ["O"]):  # The trailing O closes a final chunk.
    tag, chunk_type = _split_tag(full)
    if start is not None and _chunk_ends(prev_tag, tag, prev_type, chunk_type):
      spans.add((start, i - 1, current_type))
      start = None
    if i < len(tags) and _chunk_starts(prev_tag, tag, prev_type, chunk_type):
      start, current_type = i, chunk_type
    prev_tag, prev_type = tag, chunk_type
  return spans


def prf(correct, guessed, gold):
  """conlleval's precision, recall and F1 (percentages) of chunk counts, with the counts."""
  precision = 100.0 * correct / guessed if guessed else 0.0
  recall = 100.0 * correct / gold if gold else 0.0
  f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
  return {"precision": precision, "recall": recall, "f1": f1, "gold": gold, "guessed": guessed,
          "correct": correct}


def chunk_scores(gold_sentences, predicted_sentences):
  """conlleval's chunk precision, recall and F1, overall and per chunk type.

  Args:
    gold_sentences: sequence of sequences of IOB tag strings.
    predicted_sentences: the same shape as gold_sentences.
  Returns:
    {"overall": {...}, "by_type": {type: {...}}}, each {...} holding precision, recall, f1
    (percentages) and the counts gold, guessed, correct.
  """
  if len(gold_sentences) != len(predicted_sentences):
    raise ValueError(f"{len(gold_sentences)} gold sentences but {len(predicted_sentences)} "
                     f"predicted.")
  counts = collections.defaultdict(lambda: [0, 0, 0])  # type -> [correct, guessed, gold]
  for number, (gold, predicted) in enumerate(zip(gold_sentences, predicted_sentences)):
    if len(gold) != len(predicted):
      raise ValueError(f"Sentence {number}: {len(gold)} gold tags but {len(predicted)} "
                       f"predicted.")
    gold_spans, predicted_spans = chunk_spans(gold), chunk_spans(predicted)
    for span in gold_spans & predicted_spans:
      counts[span[2]][0] += 1
    for span in predicted_spans:
      counts[span[2]][1] += 1
    for span in gold_spans:
      counts[span[2]][2] += 1
  total = [sum(c[i] for c in counts.values()) for i in range(3)]
  return {"overall": prf(*total),
          "by_type": {t: prf(*c) for t, c in sorted(counts.items())}}


def token_accuracy(gold_sentences, predicted_sentences):
  """Percentage of tokens whose predicted tag equals the gold tag."""
  correct = total = 0
  for gold, predicted in zip(gold_sentences, predicted_sentences, strict=True):
    correct += sum(g == p for g, p in zip(gold, predicted, strict=True))
    total += len(gold)
  return 100.0 * correct / total if total else 0.0
