"""What the benchmarks ran on, and the machine's measured matmul peak."""

import os
import platform
import statistics
import time

import tensorflow as tf


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
  return {"device": "CPU", "name": name, "cores": os.cpu_count(), "tensorflow": tf.__version__}


def matmul_peak_gflops(n=4096, dtype=tf.float32, repeats=7):
  """Median GFLOP/s of an n x n x n matmul, compiled, timed after a warm-up call.

  Returns None if the dtype is not supported on this device.
  """
  try:
    a = tf.random.stateless_normal([n, n], seed=[1, 2], dtype=tf.float32)
    a, b = tf.cast(a, dtype), tf.cast(tf.transpose(a), dtype)
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.linalg.matmul(x, y)[:1, :1],
                                                            tf.float32)), jit_compile=True)
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
      start = time.perf_counter()
      matmul(a, b).numpy()
      times.append(time.perf_counter() - start)
  except (tf.errors.OpError, TypeError, ValueError):
    return None
  return 2.0 * n**3 / statistics.median(times) / 1e9
