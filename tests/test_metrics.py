"""Tests of the conlleval-exact chunk scorer and token accuracy."""

import numpy as np
import pytest
from seqeval.metrics import classification_report, f1_score, precision_score, recall_score

from mtlcore.tagging.conlleval import chunk_scores, chunk_spans, token_accuracy


@pytest.mark.parametrize("tags, spans", [
    (["B-NP", "I-NP", "O"], {(0, 1, "NP")}),
    (["I-NP", "I-NP", "B-VP"], {(0, 1, "NP"), (2, 2, "VP")}),   # I- opens a chunk.
    (["O", "I-PP"], {(1, 1, "PP")}),                            # I- after O opens a chunk.
    (["B-NP", "I-VP", "I-VP"], {(0, 0, "NP"), (1, 2, "VP")}),   # Type change inside a run.
    (["B-NP", "B-NP"], {(0, 0, "NP"), (1, 1, "NP")}),
    (["O", "B-NP", "I-NP"], {(1, 2, "NP")}),                    # Chunk ending the sentence.
    (["O", "O", "O"], set()),                                   # All O.
    ([], set()),
])
def test_chunk_spans_follow_conlleval(tags, spans):
  assert chunk_spans(tags) == spans


def test_a_chunk_is_correct_only_if_start_end_and_type_match():
  gold = [["B-NP", "I-NP", "B-VP", "O", "B-PP"]]
  predicted = [["B-NP", "B-NP", "B-VP", "O", "B-NP"]]
  overall = chunk_scores(gold, predicted)["overall"]
  # Gold chunks: NP(0-1), VP(2), PP(4). Predicted: NP(0), NP(1), VP(2), NP(4). Correct: VP.
  assert (overall["correct"], overall["guessed"], overall["gold"]) == (1, 4, 3)
  assert overall["precision"] == pytest.approx(25.0)
  assert overall["recall"] == pytest.approx(100 / 3)
  assert overall["f1"] == pytest.approx(2 * 25 * (100 / 3) / (25 + 100 / 3))


def test_per_type_scores_and_no_chunks_give_zero_not_an_error():
  scores = chunk_scores([["B-NP", "O"], ["O"]], [["B-NP", "O"], ["B-VP"]])
  assert scores["by_type"]["NP"]["f1"] == 100.0
  assert scores["by_type"]["VP"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 0,
                                     "guessed": 1, "correct": 0}
  assert chunk_scores([["O"]], [["O"]])["overall"]["f1"] == 0.0


def test_mismatched_lengths_are_errors():
  with pytest.raises(ValueError, match="Sentence 0"):
    chunk_scores([["O", "O"]], [["O"]])


def test_token_accuracy():
  assert token_accuracy([["a", "b"], ["c"]], [["a", "x"], ["c"]]) == pytest.approx(200 / 3)


def _random_tags(rng, length):
  types = ["NP", "VP", "PP"]
  return [rng.choice(["O", f"B-{rng.choice(types)}", f"I-{rng.choice(types)}"])
          for _ in range(length)]


def test_agrees_with_seqeval_default_mode_on_random_sequences():
  """seqeval's default mode reproduces conlleval; compare on 3,000 random tag sequences."""
  rng = np.random.default_rng(0)
  gold = [_random_tags(rng, int(rng.integers(1, 15))) for _ in range(3000)]
  predicted = [[t if rng.random() < 0.7 else _random_tags(rng, 1)[0] for t in s] for s in gold]
  ours = chunk_scores(gold, predicted)
  assert ours["overall"]["precision"] == pytest.approx(100 * precision_score(gold, predicted))
  assert ours["overall"]["recall"] == pytest.approx(100 * recall_score(gold, predicted))
  assert ours["overall"]["f1"] == pytest.approx(100 * f1_score(gold, predicted))
  report = classification_report(gold, predicted, output_dict=True)
  for chunk_type in ("NP", "VP", "PP"):
    assert ours["by_type"][chunk_type]["f1"] == pytest.approx(100 * report[chunk_type]["f1-score"])
    assert ours["by_type"][chunk_type]["gold"] == report[chunk_type]["support"]
