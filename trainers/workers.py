"""Multi-worker training: the strategy over the cluster TF_CONFIG names (trainers.cluster), who
writes, and bounded waits for peers.

Every worker runs the same mtl-train command with its own TF_CONFIG (BUILD.md shows one). The
chief (task "chief", or worker 0 when the cluster has no chief) owns the model directory: it
takes its lock, writes config.json, checkpoints, best/, summaries, metrics.json and the
export. Every other worker trains in step with it and writes its checkpoints to a temporary
directory of its own, removed when it exits (TensorFlow's multi-worker recipe: all workers
save, only the chief's copy is kept); it restores from the chief's checkpoints, so the model
directory must be on a file system every worker can read.

TensorFlow waits for missing peers forever (MultiWorkerMirroredStrategy's constructor blocks
until every worker has joined, holding the GIL, and a collective until every peer takes part).
Here both waits are bounded by `timeout` seconds: a worker that cannot reach its peers, or
whose peer stops answering mid-run, ends with one line and a non-zero exit instead of hanging.
"""

import contextlib
import os
import subprocess
import sys

import tensorflow as tf

from mtlcore.errors import ConfigError, MtlError
from mtlcore.trainers.cluster import Role, cluster_role


class PeerTimeout(MtlError):
  """A peer stopped answering inside a collective. TensorFlow threads may still wait on it,
  so the binary exits at once (os._exit) after printing the line."""
  exit_now = True


_WATCHDOG = """
import os, select, signal, sys
pipe, timeout, pid, message = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ready, _, _ = select.select([pipe], [], [], timeout)
if not ready:
  sys.stderr.write(message + "\\n")
  sys.stderr.flush()
  os.kill(pid, signal.SIGKILL)
"""


@contextlib.contextmanager
def _deadline(timeout, message):
  """Kills this process after `timeout` seconds unless the block has finished, printing
  `message` first. A separate process keeps the time: TensorFlow's join holds the GIL, so no
  thread or signal handler of this one would run."""
  read, write = os.pipe()
  watchdog = subprocess.Popen([sys.executable, "-c", _WATCHDOG, str(read), str(timeout),
                               str(os.getpid()), message], pass_fds=(read,))
  os.close(read)
  try:
    yield
  finally:
    os.close(write)  # The watchdog sees end-of-file and exits quietly.
    watchdog.wait()


def multi_worker_strategy(timeout):
  """MultiWorkerMirroredStrategy over the TF_CONFIG cluster, waiting at most `timeout`
  seconds for every worker to join (then: one line on stderr and the process is killed, exit
  status -9); its collectives time out after `timeout` too."""
  role = cluster_role()
  message = (f"mtl-train: error: --strategy=multi_worker: {role.name} waited {timeout} s "
             f"(--worker_timeout) and not every worker TF_CONFIG names joined; start them "
             f"all, or check the addresses.")
  options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
  try:
    with _deadline(timeout, message):
      return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    raise ConfigError(f"--strategy=multi_worker: {role.name} could not join the cluster: "
                      f"{str(e).splitlines()[0][:200]}") from None


def role_of(strategy):
  """This process' Role under `strategy` (the chief alone unless it is multi-worker)."""
  if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
    return cluster_role()
  return Role()


class StopAgreement:
  """Makes every worker stop at the same step: after each loop of steps, the workers'
  stop requests are all-reduced (any worker asking stops them all)."""

  def __init__(self, strategy):
    self.strategy = strategy
    self._reduce = tf.function(self._any, autograph=False)

  def _any(self, flag):
    per_replica = self.strategy.experimental_distribute_values_from_function(
        lambda _: tf.identity(flag))
    return self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)

  def __call__(self, asked):
    return bool(self._reduce(tf.constant(1.0 if asked else 0.0)).numpy() > 0)
