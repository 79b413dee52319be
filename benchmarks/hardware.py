"""What the benchmarks ran on, the machine's measured matmul peak, and what bf16 buys per op.

The peak is measured the way training runs: in the same process and with the same thread
settings, on square matmuls of several sizes, in fp32 and bf16, compiled with XLA and without.
Each configuration is warmed up (its first call traces and compiles, untimed) and then timed
over repeated trials, keeping the best: the peak is what the machine can do, not what it
usually does. The peak of a precision is the best of its configurations.

`op_speeds` times the tagger step's heaviest ops at the benchmark's shape the same way, forward
and backward, in both precisions, with and without XLA: a square matmul's bf16 speed-up is not
a convolution's, and a step can gain from bf16 at most what its heavy ops gain.
"""

import os
import platform
import time

import tensorflow as tf

from mtlcore.errors import MtlError

DTYPES = {"fp32": tf.float32, "bf16": tf.bfloat16}


def describe_device():
  """{"device": "CPU"/"GPU", "name": ..., "cores": ...}, read from the machine itself."""
  gpus = tf.config.list_physical_devices("GPU")
  if gpus:
    details = tf.config.experimental.get_device_details(gpus[0])
    return {"device": "GPU", "name": details.get("device_name", gpus[0].name),
            "count": len(gpus), "tensorflow": tf.__version__}
  name = platform.processor() or "unknown CPU"
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      for line in f:
        if line.startswith("model name"):
          name = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  return {"device": "CPU", "name": name, "cores": os.cpu_count(), "tensorflow": tf.__version__,
          "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads() or "default",
          "inter_op_threads": tf.config.threading.get_inter_op_parallelism_threads() or "default"}


def _best_seconds(call, *, trials, calls=3):
  """Best-of-`trials` seconds per call of `call()` (each trial `calls` back-to-back calls),
  after one untimed call that traces and compiles."""
  call()
  best = float("inf")
  for _ in range(trials):
    start = time.perf_counter()
    for _ in range(calls):
      call()
    best = min(best, (time.perf_counter() - start) / calls)
  return best


def matmul_gflops(n, dtype=tf.float32, *, xla=True, trials=5, calls=3):
  """Best-of-`trials` GFLOP/s of an n x n x n matmul (each trial `calls` back-to-back calls,
  after one untimed warm-up call); None if the dtype is not supported here."""
  try:
    a = tf.random.stateless_normal([n, n], seed=[1, 2], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y)[:1, :1],
                                                            tf.float32)), jit_compile=xla)
    best = _best_seconds(lambda: matmul(a, b).numpy(), trials=trials, calls=calls)
  except (tf.errors.OpError, TypeError, ValueError):
    return None
  return 2.0 * n**3 / best / 1e9


def matmul_peaks(sizes=(1024, 2048, 4096), *, trials=5):
  """{"table": [{precision, n, xla, gflops}], "peak": {precision: best GFLOP/s}}."""
  table = []
  for precision, dtype in DTYPES.items():
    for n in sizes:
      for xla in (True, False):
        table.append({"precision": precision, "n": n, "xla": xla,
                      "gflops": matmul_gflops(n, dtype, xla=xla, trials=trials)})
  peak = {}
  for row in table:
    if row["gflops"] is not None:
      peak[row["precision"]] = max(peak.get(row["precision"], 0.0), row["gflops"])
  return {"table": table, "peak": peak}


def _forward_backward(op):
  """(x, w, upstream) -> [dx, dw] of sum(op(x, w) * upstream), the loss in float32."""
  def grads(x, w, upstream):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      loss = tf.reduce_sum(tf.cast(op(x, w), tf.float32) * upstream)
    return tape.gradient(loss, [x, w])
  return grads


def heavy_ops(config, *, batch, seq_len, max_chars):
  """name -> (op, x shape, w shape, output shape): the tagger step's heaviest ops at this shape
  (config: a mtlcore.tagging.tagger.TaggerConfig)."""
  conv = lambda x, w: tf.nn.conv1d(x, w, 1, "SAME")
  words, hidden = batch * seq_len, 2 * config.hidden_size
  first = config.word_dim + config.char_filters
  return {
      f"trunk conv [{batch}, {seq_len}, {hidden}] -> {hidden}, width {config.conv_width}":
          (conv, [batch, seq_len, hidden], [config.conv_width, hidden, hidden],
           [batch, seq_len, hidden]),
      f"char conv [{words}, {max_chars}, {config.char_dim}] -> {config.char_filters}, width "
      f"{config.char_width}":
          (conv, [words, max_chars, config.char_dim],
           [config.char_width, config.char_dim, config.char_filters],
           [words, max_chars, config.char_filters]),
      f"BiLSTM input projection [{words}, {first}] x [{first}, {4 * hidden}]":
          (tf.linalg.matmul, [words, first], [first, 4 * hidden], [words, 4 * hidden]),
  }


def op_speeds(ops, *, trials=5):
  """[{op, precision, xla, ms}]: forward + backward of each of `ops` (heavy_ops' form), best
  of `trials` after a warm-up; ms None where a precision is not supported here."""
  table = []
  for name, (op, x_shape, w_shape, out_shape) in ops.items():
    x = tf.random.stateless_normal(x_shape, seed=[1, 2])
    w = tf.random.stateless_normal(w_shape, seed=[3, 4]) * 0.05
    upstream = tf.random.stateless_normal(out_shape, seed=[5, 6])
    for precision, dtype in DTYPES.items():
      for xla in (False, True):
        fn = tf.function(_forward_backward(op), jit_compile=xla)
        try:
          args = (tf.cast(x, dtype), tf.cast(w, dtype), upstream)
          ms = 1000 * _best_seconds(lambda: [out.numpy() for out in fn(*args)], trials=trials)
        except (tf.errors.OpError, TypeError, ValueError):
          ms = None
        table.append({"op": name, "precision": precision, "xla": xla, "ms": ms})
  return table


def check_below_peak(rows, peak):
  """Raises MtlError if a row's GFLOP/s exceeds the measured peak of its own precision: the
  FLOP count or the timing is then wrong, and no ratio to the peak can be trusted."""
  over = [r for r in rows if r.get("gflops") and peak.get(r.get("precision", "fp32"))
          and r["gflops"] > peak[r.get("precision", "fp32")]]
  if over:
    r = over[0]
    precision = r.get("precision", "fp32")
    raise MtlError(
        f"{len(over)} row(s) above the measured {precision} matmul peak, e.g. {r['trunk']} "
        f"{r['execution']} {r['mode']}: {r['gflops']:.0f} GFLOP/s against a peak of "
        f"{peak[precision]:.0f}; the FLOP count or the timing is wrong.")
