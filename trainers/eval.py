"""mtl-eval: scores a trained CoNLL-2000 tagger and writes its predictions.

  mtl-eval --model_dir=runs/conll2000 [--split=test] [--output=predictions.txt]

Prints POS accuracy and conlleval's chunk precision, recall and F1 (overall and per type).
--output is in conlleval's input format: one token per line,
`word gold_pos pred_pos gold_chunk pred_chunk`, a blank line between sentences; the last two
columns are what conlleval scores.
"""

import os
import tempfile

from absl import flags

from mtlcore import tagging
from mtlcore.data import conll2000
from mtlcore.errors import ConfigError
from trainers import cli, task_sets

FLAGS = flags.FLAGS
flags.DEFINE_string("model_dir", None, "A model directory written by mtl-train.")
flags.DEFINE_enum("split", "test", ["dev", "test"], "Which split to score.")
flags.DEFINE_enum("checkpoint", "best", ["best", "latest"], "best-on-dev or latest checkpoint.")
flags.DEFINE_string("data_dir", None, "CoNLL-2000 directory (default: $MTL_DATA_DIR or cache).")
flags.DEFINE_string("output", None, "Write predictions here in conlleval's input format.")


def write_predictions(path, sentences, predictions):
  """Writes `word gold_pos pred_pos gold_chunk pred_chunk` lines atomically."""
  directory = os.path.dirname(os.path.abspath(path))
  try:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".predictions.")
  except OSError as e:
    raise ConfigError(f"--output={path}: cannot write there ({e.strerror}).") from None
  with os.fdopen(fd, "w", encoding="utf-8") as f:
    for i, s in enumerate(sentences):
      for row in zip(s.words, s.pos, predictions["pos"][i], s.chunks, predictions["chunk"][i]):
        f.write(" ".join(row) + "\n")
      f.write("\n")
  os.replace(tmp, path)


def format_metrics(metrics):
  lines = [f"{'pos_accuracy':<20s} {metrics['pos_accuracy']:7.2f}"]
  for key in ("chunk_precision", "chunk_recall", "chunk_f1"):
    lines.append(f"{key:<20s} {metrics[key]:7.2f}")
  lines += [f"  {k:<18s} {v:7.2f}" for k, v in sorted(metrics.items()) if k.startswith("chunk_f1/")]
  return "\n".join(lines)


def run():
  if not FLAGS.model_dir:
    raise ConfigError("--model_dir is required.")
  model, featurizer, vocabularies, path = task_sets.restore_tagger(FLAGS.model_dir,
                                                                   FLAGS.checkpoint)
  splits = conll2000.load_splits(FLAGS.data_dir)
  sentences = splits.dev if FLAGS.split == "dev" else splits.test
  predictor = tagging.TagPredictor(model, featurizer, vocabularies, tasks=task_sets.CONLL_TASKS)
  predictions = predictor.predict(sentences)
  metrics = tagging.score(sentences, predictions)
  print(f"checkpoint {path}\nsplit {FLAGS.split}: {len(sentences)} sentences, "
        f"{sum(len(s) for s in sentences)} tokens")
  print(format_metrics(metrics))
  if FLAGS.output:
    write_predictions(FLAGS.output, sentences, predictions)
  return metrics


def console_main():
  cli.run("mtl-eval", run)


if __name__ == "__main__":
  console_main()
