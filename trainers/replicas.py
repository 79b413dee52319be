"""Replicas: how a trainer runs its steps under a tf.distribute strategy.

A trainer built inside `strategy.scope()` trains under that strategy (MirroredStrategy over
several devices, MultiWorkerMirroredStrategy over several machines); built outside any
scope it runs on one device as before, through exactly the same code it always has.

Under a strategy a step is split in two, because on CPU devices TensorFlow cannot compile a
cross-replica all-reduce with XLA (MirroredStrategy's merge calls) nor run one inside a
`tf.cond`:

- per replica, compiled with XLA (one tf.function per device, so each replica's program reads
  its own copy of the variables): the forward pass, the loss and its gradients, the log
  vector, on that replica's batch;
- across replicas, not compiled: the all-reduce (a sum) of gradients, loss totals and logs,
  the non-finite guard, gradient clipping and the optimizer update, applied once to every
  copy of each variable.

Inputs: each replica gets its own batch of `global batch / replicas` examples, made by the
same `start -> dataset` stream as on one device (built with the per-replica batch size).
Global step s consumes the stream's batches s*R .. s*R + R - 1 (R replicas in all): worker w's
input pipeline keeps those of its own replicas, so the data position is still the global step
alone (no iterator state in a checkpoint) and resume stays exact.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError


def configure_logical_cpus(count):
  """Splits the first physical CPU into `count` logical devices (to try a strategy on one
  CPU). Must run before TensorFlow initialises its devices; count 0 leaves them alone."""
  if not count:
    return
  if count < 0:
    raise ConfigError(f"--num_logical_cpus must be >= 0, got {count}.")
  cpu = tf.config.list_physical_devices("CPU")[0]
  wanted = [tf.config.LogicalDeviceConfiguration()] * count
  try:
    tf.config.set_logical_device_configuration(cpu, wanted)
  except RuntimeError:
    have = len(tf.config.list_logical_devices("CPU"))
    if have != count:
      raise ConfigError(f"--num_logical_cpus={count}: TensorFlow is already initialised with "
                        f"{have} logical CPU(s); set it before anything else runs (the "
                        f"binaries do).") from None


class Replicas:
  """The strategy a trainer was built under, and the few things it does differently there."""

  def __init__(self, strategy=None):
    self.strategy = strategy or tf.distribute.get_strategy()
    # The default strategy (no scope entered) keeps the single-device step, bitwise as before.
    self.distributed = tf.distribute.has_strategy() if strategy is None else True
    self.count = self.strategy.num_replicas_in_sync
    self._compiled = {}  # (step name, device) -> tf.function
    # Step name -> indices of the variables its loss reaches (found when a replica traces).
    self.reached = {}
    # Step name -> indices of the Keras state variables its forward pass assigns.
    self.updated = {}
    # Step name -> the shared variables whose per-task gradient rows its replicas give
    # (a joint gradient method's), in the rows' column order.
    self.row_variables = {}

  def replica_index(self):
    """This replica's index in [0, count) (an int32 scalar; 0 outside strategy.run)."""
    context = tf.distribute.get_replica_context()
    if context is None or not self.distributed:
      return tf.constant(0, tf.int32)
    return tf.cast(context.replica_id_in_sync_group, tf.int32)

  def compiled(self, fn, *, jit_compile, name):
    """`fn` as strategy.run calls it: on each device its own tf.function(jit_compile), run
    under that device, so the compiled program reads the local copy of every variable."""

    def call(*args):
      # The replica's device, from the device scope strategy.run sets for it (the replica
      # context's `devices` indexes local devices by the global replica id: multi-worker
      # breaks it).
      device = tf.identity(0).device
      key = (name, device)
      if key not in self._compiled:
        self._compiled[key] = tf.function(fn, jit_compile=jit_compile, autograph=False)
      with tf.device(device):
        return self._compiled[key](*args)

    return call

  def functions(self, name):
    """The per-device tf.functions made for `name` so far (for trace counts)."""
    return [f for (n, _), f in self._compiled.items() if n == name]

  def run(self, fn, args):
    return self.strategy.run(fn, args=args)

  def sum(self, per_replica):
    """The sum over replicas of a nest of per-replica tensors (a nest of tensors), in one
    batched all-reduce (packed into few collectives, not one per tensor)."""
    flat = tf.nest.flatten(per_replica)
    # Reduced onto the replicas' own devices: TensorFlow packs a batch into few collectives
    # only when each value's destination is where it lives (else one all-reduce per tensor).
    reduced = self.strategy.extended.batch_reduce_to(
        tf.distribute.ReduceOp.SUM, [(v, v) for v in flat])
    return tf.nest.pack_sequence_as(
        per_replica, [self.strategy.experimental_local_results(r)[0] for r in reduced])

  def iterator(self, make_dataset, position):
    """An iterator of per-replica batches from global step `position` on, over a stream
    `start -> dataset` of per-replica batches (see the module docstring); on one device, the
    stream's own iterator from batch `position`."""
    if not self.distributed:
      return iter(make_dataset(position))
    replicas = self.count

    def dataset_fn(context):
      pipelines, pipeline = context.num_input_pipelines, context.input_pipeline_id
      dataset = make_dataset(position * replicas)
      if pipelines > 1:
        own = replicas // pipelines  # Consecutive batches of a step go to one worker's replicas.
        dataset = dataset.enumerate().filter(
            lambda i, _: (i // own) % pipelines == pipeline).map(lambda _, batch: batch)
      return dataset

    return iter(self.strategy.distribute_datasets_from_function(dataset_fn))
