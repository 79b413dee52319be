"""mtl-tag: tags text with an exported tagger, reading stdin and writing CoNLL format.

  echo "He reckons the deficit will narrow ." | mtl-tag --model=runs/export

Input: one sentence per line, tokens separated by white space. Output: one `word POS chunk`
line per token and a blank line after each sentence (an empty input line gives just the blank
line). Needs only the export directory. A line that cannot be tagged (not UTF-8) is reported on
stderr with its number; the others are still tagged, and the exit status is then 1.
"""

import sys

import tensorflow as tf
from absl import flags

from mtlcore.errors import ConfigError, MtlError
from trainers import cli

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An export directory written by mtl-train --export_dir.")
flags.DEFINE_integer("batch_size", 64, "Sentences tagged per call.")


def load(export_dir):
  try:
    return tf.saved_model.load(export_dir).signatures["serving_default"]
  except (OSError, ValueError, KeyError, tf.errors.OpError) as e:
    raise ConfigError(f"--model={export_dir} is not an exported tagger "
                      f"({str(e).splitlines()[0][:200]}).") from None


def tag_batch(signature, sentences):
  """Tags lists of tokens; returns, per sentence, a list of (word, pos, chunk)."""
  longest = max((len(s) for s in sentences), default=0)
  if longest == 0:
    return [[] for _ in sentences]
  padded = [s + [""] * (longest - len(s)) for s in sentences]
  out = signature(tokens=tf.constant(padded, tf.string))
  pos, chunk = out["pos"].numpy(), out["chunk"].numpy()
  return [[(w, pos[i, j].decode(), chunk[i, j].decode()) for j, w in enumerate(s)]
          for i, s in enumerate(sentences)]


def run():
  if not FLAGS.model:
    raise ConfigError("--model is required (an export directory).")
  if FLAGS.batch_size <= 0:
    raise ConfigError(f"--batch_size must be positive, got {FLAGS.batch_size}.")
  signature = load(FLAGS.model)
  failed = []
  pending = []

  def flush():
    results = tag_batch(signature, [tokens for _, tokens in pending])
    for rows in results:
      sys.stdout.write("".join(f"{w} {p} {c}\n" for w, p, c in rows) + "\n")
    pending.clear()

  for number, raw in enumerate(sys.stdin.buffer, 1):
    try:
      line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
      flush()
      failed.append(number)
      print(f"mtl-tag: line {number}: not valid UTF-8 (byte {e.start + 1}); not tagged.",
            file=sys.stderr)
      continue
    pending.append((number, line.lstrip("\ufeff").split()))
    if len(pending) >= FLAGS.batch_size:
      flush()
  flush()
  sys.stdout.flush()
  if failed:
    raise MtlError(f"{len(failed)} line(s) could not be tagged: {failed[:20]}.")


def console_main():
  cli.run("mtl-tag", run)


if __name__ == "__main__":
  console_main()
