"""mtl-tag: labels the tokens of text with an exported model, reading stdin, writing columns.

  echo "He reckons the deficit will narrow ." | mtl-tag --model=runs/export

Input: one sentence per line, tokens separated by white space. Output: one line per token,
the token and then one label per task the model serves, in the run's task order, and a blank
line after each sentence (an empty input line gives just the blank line). Needs only the
export directory: a SavedModel whose `serving_default` takes `tokens` (string [B, T], padded
with "") and returns one string [B, T] label tensor per task (or, for a task that labels
the whole row, string [B], printed as a line `# TASK = LABEL` before the row's tokens), with
the tasks' order in its `task_order` variable (what the built-in sequence task sets
export). A line that cannot be labelled (not UTF-8) is reported on stderr with its number;
the others are still labelled, and the exit status is then 1.
"""

import sys

from absl import flags

from mtlcore.errors import ConfigError, MtlError
from mtlcore.trainers.cli import common
# The run flags define --batch_size, which mtl-tag reads.
from mtlcore.trainers.cli import flags as run_flags  # pylint: disable=unused-import
from mtlcore.trainers.cli import task_set_flags

FLAGS = flags.FLAGS
flags.DEFINE_string("model", None, "An export directory written by mtl-train --export_dir.")
DEFAULT_BATCH_SIZE = 64


def load(export_dir):
  """(serving signature, the tasks it serves in the run's order) of a token-labelling export."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    loaded = tf.saved_model.load(export_dir)
    signature = loaded.signatures["serving_default"]
    tasks = [t.decode() for t in loaded.task_order.numpy()]
  except (OSError, ValueError, KeyError, AttributeError, tf.errors.OpError) as e:
    raise ConfigError(f"--model={export_dir} is not an export that labels tokens "
                      f"({str(e).splitlines()[0][:200]}).") from None
  return signature, tasks


def tag_batch(signature, sentences, tasks):
  """Tags lists of tokens; returns, per sentence, (its rows: (word, tag of each token-level
  task), {task: label} of the tasks whose output labels the whole row (shape [B]))."""
  longest = max((len(s) for s in sentences), default=0)
  if longest == 0:
    return [([], {}) for _ in sentences]
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  padded = [s + [""] * (longest - len(s)) for s in sentences]
  out = signature(tokens=tf.constant(padded, tf.string))
  outputs = {t: out[t].numpy() for t in tasks}
  whole = [t for t in tasks if outputs[t].ndim == 1]
  tags = [outputs[t] for t in tasks if t not in whole]
  return [([(w, *(t[i, j].decode() for t in tags)) for j, w in enumerate(s)],
           {t: outputs[t][i].decode() for t in whole} if s else {})
          for i, s in enumerate(sentences)]


def main():
  common.refuse_flags("mtl-tag", ("batch_size",))
  if not FLAGS.model:
    raise ConfigError("--model is required (an export directory).")
  batch_size = DEFAULT_BATCH_SIZE if FLAGS.batch_size is None else FLAGS.batch_size
  if batch_size <= 0:
    raise ConfigError(f"--batch_size must be positive, got {batch_size}.")
  common.start_tensorflow()
  signature, tasks = load(FLAGS.model)
  failed = []
  pending = []

  def flush():
    results = tag_batch(signature, [tokens for _, tokens in pending], tasks)
    for rows, labels in results:
      sys.stdout.write("".join(f"# {task} = {label}\n" for task, label in labels.items())
                       + "".join(" ".join(row) + "\n" for row in rows) + "\n")
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
    if len(pending) >= batch_size:
      flush()
  flush()
  sys.stdout.flush()
  if failed:
    raise MtlError(f"{len(failed)} line(s) could not be tagged: {failed[:20]}.")


def console_main():
  common.run("mtl-tag", main, usage=__doc__, help_groups=(("mtl-tag", ("model", "batch_size")),),
             prepare=lambda argv: task_set_flags.clear())  # It reads no task set's options.


if __name__ == "__main__":
  console_main()
