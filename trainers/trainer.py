"""Trainer: what the alternating and the joint trainer share.

The contract follows Orbit's: `train(num_steps)` is called eagerly by the outer loop and runs
`num_steps` steps inside one `tf.function`, pulling batches from tf.data iterators, so Python
is off the hot path. Each step (forward, backward and update together) is its own
`tf.function(jit_compile=...)`, built once and kept. Logs come back as one flat tensor per
step (trainers.logs.LogLayout), summed over the call and returned as a typed LoopLogs;
summaries and checkpoints are the outer loop's business.

The engine knows tasks only through mtlcore.tasks.Task: a task's loss is a Ratio(total,
count), and the trainer divides. It reads no feature by name.

Every piece of state that decides the future is an attribute of the trainer (a tf.Module), so
`tf.train.Checkpoint(trainer=trainer)` holds it: variables, optimizer slots and counters,
global and per-task step counters and the sampler's generator. Dropout masks are drawn from
(seed, global step), so they need no state of their own.

Input iterators are not state. Every input stream is given as a function `start -> dataset`
that begins at batch number `start` (mtlcore.batching), and the stream's position is a
step counter the checkpoint already holds: the global step for the joint stream, a task's step
counter for its own stream (each step consumes one batch, applied or skipped). Before running
steps, `train` checks that its iterators stand where the counters say and rebuilds them if not
(the first call, or after a checkpoint was restored), so a checkpoint stays the same size
whatever the corpus, and resume is exact. A plain tf.data.Dataset is accepted as well; it is
then rebuilt with `dataset.skip(start)`: exact too, but it reads `start` batches to get there.
For a source where that is slow or impossible (large shuffle buffers, sources that cannot
seek), `checkpoint_inputs()` makes the streams' tf.data iterators part of the checkpoint
instead, where TensorFlow can save them (not a `from_generator` pipeline, whose state is
Python's, nor an iterator over a distributed dataset: those keep resuming by position).

A trainer built inside a tf.distribute strategy's scope trains under it
(trainers.replicas): each replica runs the forward and backward pass on its own batch
(compiled with XLA per device), and the sum over replicas of gradients and (total, count)
pairs feeds one guarded update outside the compiled part. Each replica's dropout masks come
from (seed, global step x replicas + replica index), so replicas never share masks, and one
replica trains exactly as a single device does.
"""

import contextlib
import dataclasses
import gc
import os
import shutil
import tempfile

import tensorflow as tf

from mtlcore.errors import ConfigError, NonFiniteError, require_positive, traced_control_flow
from mtlcore.ownership import SHARED
from mtlcore.trainers.logs import LogLayout
from mtlcore.trainers.replicas import Replicas


def input_maker(dataset):
  """`start -> tf.data.Dataset` for a stream given as such a function or as a dataset."""
  if isinstance(dataset, tf.data.Dataset):
    return dataset.skip
  if not callable(dataset):
    raise ConfigError(f"An input stream must be a tf.data.Dataset or a function start -> "
                      f"dataset, got {type(dataset).__name__}.")
  return dataset


class _Inputs:
  """The iterators of the input streams and the positions they stand at. A plain object, so
  neither tf.Module nor a checkpoint tracks it."""

  def __init__(self, makers):
    self.makers = makers
    self.iterators = None
    self.positions = None
    self.checkpointed = {}  # stream -> its iterator, saved in the checkpoint.


class _Uncheckpointed:
  """Holds variables that neither tf.Module nor a checkpoint tracks (a plain object)."""

  def __init__(self, **variables):
    self.__dict__.update(variables)


def _mean_of(total, replicas):
  """The mean over `replicas` of a state value from its sum over them (floored for integer
  state: replicas that agree give their value)."""
  if total.dtype.is_floating:
    return total / tf.cast(replicas, total.dtype)
  return total // replicas


class Trainer(tf.Module):
  """Base class: step counters, the dropout seed, the non-finite guard and log bookkeeping."""

  def __init__(self, *, model, tasks, seed, clip_norm, max_nonfinite_steps, jit_compile,
               weight_average=None, frozen_variables=(), loss_scale=None, name=None):
    super().__init__(name=name)
    if not tasks:
      raise ConfigError("A trainer needs at least one task.")
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
      raise ConfigError(f"Task names must be unique, got {names}.")
    model.check_tasks(names)
    if clip_norm is not None and not clip_norm > 0:
      raise ConfigError(f"clip_norm must be positive or None, got {clip_norm!r}.")
    self.model = model
    self.tasks = {t.name: t for t in tasks}
    self.clip_norm = clip_norm
    if not isinstance(max_nonfinite_steps, int) or max_nonfinite_steps < 0:
      raise ConfigError(
          f"max_nonfinite_steps must be a non-negative integer, got {max_nonfinite_steps!r}.")
    self.max_nonfinite_steps = max_nonfinite_steps
    # A mtlcore.averaging.WeightAverage of the model's variables, updated after every applied
    # update; evaluation uses it through `evaluation_weights()`.
    self.weight_average = weight_average
    self._seed = int(seed)
    self.global_step = tf.Variable(0, dtype=tf.int64, trainable=False, name="global_step")
    self.task_steps = {name: tf.Variable(0, dtype=tf.int64, trainable=False, name=f"{name}_steps")
                       for name in names}
    self.nonfinite_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="nonfinite_steps")
    self.log_layout = LogLayout(self.tasks)
    # Variables no step changes (e.g. a warm-started trunk kept fixed): no gradient, no slots.
    self._frozen = {v.ref() for v in frozen_variables}
    # A mtlcore.precision.LossScale for fp16, shared by every task's steps; None otherwise.
    self.loss_scale = loss_scale
    # fp16 steps skipped because the scaled gradient overflowed: logged, not a non-finite
    # step, and not in the checkpoint (whose layout stays that of earlier versions).
    self._overflows = _Uncheckpointed(count=tf.Variable(0, dtype=tf.int64, trainable=False,
                                                        name="loss_scale_overflows"))
    # A ConfigError raised while tracing a step, raised again by `train` as itself.
    self._refusal = _Uncheckpointed(error=None)
    # The strategy whose scope the trainer (and so its variables) was built in.
    self._replicas = Replicas()
    self._jit_compile = jit_compile

  def _set_inputs(self, datasets, counters):
    """datasets: {stream: dataset or start -> dataset}; counters: {stream: the int64 variable
    counting its batches consumed}."""
    self._inputs = _Inputs({k: input_maker(d) for k, d in datasets.items()})
    self._input_counters = counters

  def _positions(self):
    return {k: int(v.numpy()) for k, v in self._input_counters.items()
            if k not in self._inputs.checkpointed}

  def _sync_inputs(self):
    """Rebuilds the iterators (and retraces the loop that reads them) unless they already
    stand where the step counters say. A checkpointed iterator stands where the checkpoint
    put it and is never rebuilt."""
    positions = self._positions()
    if positions != self._inputs.positions or self._inputs.iterators is None:
      self._inputs.iterators = {k: self._replicas.iterator(self._inputs.makers[k], p)
                                for k, p in positions.items()}
      self._inputs.iterators.update(self._inputs.checkpointed)
      self._inputs.positions = positions
      # Without autograph: the loop and the steps are written in TensorFlow's own control
      # flow, so tracing does not transpile every Python function they call (that took
      # about a third of a small run's start-up).
      self._loop = tf.function(self._loop_impl, autograph=False)

  def checkpoint_inputs(self):
    """Makes each input stream's tf.data iterator part of the trainer's checkpoint where
    TensorFlow can save it; call before restoring a checkpoint. A stream whose iterator
    cannot be saved (a `from_generator` pipeline, or any stream under a tf.distribute
    strategy) keeps resuming by its position.

    Returns {stream: (bytes one saved iterator takes, None) or (None, why it cannot be)},
    measured by saving each iterator once into a temporary directory.
    """
    report = {}
    for name, make in self._inputs.makers.items():
      if self._replicas.distributed:
        report[name] = (None, "an iterator over a distributed dataset cannot be saved")
        continue
      iterator = iter(make(0))
      probe = tempfile.mkdtemp(prefix="mtlcore-iterator-")
      try:
        tf.train.Checkpoint(iterator=iterator).write(os.path.join(probe, "probe"))
        size = sum(os.path.getsize(os.path.join(probe, f)) for f in os.listdir(probe))
      except (tf.errors.OpError, ValueError, TypeError) as e:
        report[name] = (None, str(e).strip().splitlines()[0][:160])
        continue
      finally:
        shutil.rmtree(probe, ignore_errors=True)
      self._inputs.checkpointed[name] = iterator
      report[name] = (size, None)
    # Tracked by tf.Module, so tf.train.Checkpoint(trainer=...) saves and restores them.
    self.input_iterators = dict(self._inputs.checkpointed)
    self._inputs.positions = None  # The next `train` builds the rest and retraces.
    return report

  def close(self):
    """Releases the input iterators now (training again rebuilds them where the counters
    stand). A tf.data iterator left to the garbage collector is destroyed whenever the
    collector runs, possibly while a later step is being traced, and TensorFlow's iterator
    destructor waits there for the pipeline's threads: call this when done training."""
    if getattr(self, "_inputs", None) is not None:
      self._inputs.iterators = self._inputs.positions = None
      self._loop = None  # Its traced graph captures the iterators too.
    gc.collect()  # They sit in reference cycles (the trainer's tf.functions): collect now.

  def trained(self, variables):
    """`variables` without the frozen ones, in order."""
    return [v for v in variables if v.ref() not in self._frozen]

  def _forward(self, features, tasks, seed=None, representations=False, head_inputs=False):
    """The training-mode forward pass of `tasks` on a batch: (predictions, Keras state
    updates [(index into the owner map's state, new value)]), none of them applied, and with
    `representations` the trunk's representations, with `head_inputs` each head's copy of
    what it read (MultiTaskModel.forward). `seed`: the dropout seed (default: the current
    step's, `step_seed`)."""
    try:
      return self.model.forward(features, tasks=tasks, training=True,
                                seed=self.step_seed() if seed is None else seed,
                                representations=representations, head_inputs=head_inputs)
    except ConfigError as error:  # Raised while tracing: `train` raises it as itself.
      self._refusal.error = error
      raise

  def _state_updates(self, updates, labelled):
    """[(state variable, new value, active)] of a forward pass's `updates` that the step may
    apply: the shared state's always (active None), a task's only if the task is in
    `labelled` ({task: bool scalar, or None for always}), and then only where it says so."""
    state, applied = self.model.owners.state, []
    for i, value in updates:
      variable, owner = state[i]
      if owner is SHARED or owner in labelled:
        applied.append((variable, value, None if owner is SHARED else labelled[owner]))
    return applied

  def _check_reads(self, tape, where):
    """At trace time: every trainable variable the step read is owned (else ConfigError,
    which `train` raises as itself: tracing would wrap it in a StagingError)."""
    try:
      self.model.owners.check_reads(tape.watched_variables(), where,
                                    also=self._trainer_owned())
    except ConfigError as error:
      self._refusal.error = error
      raise

  def _trainer_owned(self):
    """Trainable variables the trainer itself owns beside the model's (a weighting's)."""
    return ()

  def step_seed(self, step=None):
    """The int64 [2] dropout seed of the current step (or global step `step`) and replica:
    (trainer seed, global step x replicas + replica index); on one device (trainer seed,
    global step)."""
    step = self.global_step if step is None else step
    if not self._replicas.distributed:
      return tf.stack([tf.constant(self._seed, tf.int64), step])
    replica = tf.cast(self._replicas.replica_index(), tf.int64)
    return tf.stack([tf.constant(self._seed, tf.int64), step * self._replicas.count + replica])

  def _gradients(self, tape, loss, variables):
    """Gradients of `loss` for the variables it reaches, clipped to `clip_norm` if set.

    Returns (grads, reached variables, (whether the loss is finite, whether the gradients
    are)). A variable the loss does not reach (e.g. the top trunk layer for a head that reads
    a lower one) is left out, so its optimizer slots are not touched either. With a loss
    scale the gradient is taken of loss x scale and divided by the scale.
    """
    return self._checked(self._unscaled_gradient(tape, loss, variables), variables, loss)

  def _unscaled_gradient(self, tape, loss, variables):
    """tape.gradient of `loss` (None for a variable it does not reach), through the loss
    scale if there is one. `variables` may hold tensors of the compute type too (a
    representation); through a loss scale their gradients come back in float32."""
    if self.loss_scale is None:
      return tape.gradient(loss, variables)
    scale = self.loss_scale.scale.read_value()
    grads = tape.gradient(loss, variables, output_gradients=scale)
    return [None if g is None else tf.cast(tf.convert_to_tensor(g), scale.dtype) / scale
            for g in grads]

  def _checked(self, grads, variables, loss):
    """`_gradients`' result from raw gradients (None where not reached)."""
    pairs = [(tf.convert_to_tensor(g), v) for g, v in zip(grads, variables) if g is not None]
    grads, variables = [g for g, _ in pairs], [v for _, v in pairs]
    norm = tf.linalg.global_norm(grads)
    finite = (tf.math.is_finite(loss), tf.math.is_finite(norm))
    if self.clip_norm is not None:
      grads, _ = tf.clip_by_global_norm(grads, self.clip_norm, use_norm=norm)
    return grads, variables, finite

  def _apply_if_finite(self, finite, optimizer, grads, variables, task_names, active=None,
                       on_apply=None, state_updates=(), labelled=None):
    """Applies the update only when loss and gradients are finite (`finite`, the pair that
    `_gradients` returns), else skips it; returns 1 for a non-finite step, else 0.

    A skipped step applies nothing (the optimizer's update counter does not advance). With a
    loss scale, a finite loss whose scaled gradient overflowed only halves the scale: it is
    not a non-finite step. `active` (optional, per variable None, a bool scalar or a bool per
    row) leaves the variables (rows) where it is False and their optimizer slots bitwise
    unchanged. The global and per-task step counters advance either way: they count batches
    consumed, and the next step must draw fresh dropout masks. `on_apply` (optional) runs
    with an applied update, and so do `state_updates` ([(Keras state variable, new value, active bool or None)]: moving
    statistics move only with an applied update, and only where active). `labelled`
    (optional bool scalar) False skips the update too, without counting a non-finite step:
    a batch without one labelled unit of the step's tasks changes no variable or slot (a zero
    gradient would still move Adam by its moments).
    """
    loss_finite, gradient_finite = finite
    finite = loss_finite & gradient_finite
    overflow = tf.constant(False)
    if self.loss_scale is not None:
      overflow = self.loss_scale.overflowed(loss_finite, gradient_finite)

    def apply():
      optimizer.apply(grads, variables, active)
      for variable, value, on in state_updates:
        variable.assign(value if on is None else tf.where(on, value, variable.value))
      if on_apply is not None:
        on_apply()
      if self.weight_average is not None:
        self.weight_average.update()
      return tf.constant(0, tf.int64)

    def skip():
      bad = tf.cast(~finite & ~overflow, tf.int64)
      self.nonfinite_steps.assign_add(bad)
      self._overflows.count.assign_add(tf.cast(~finite & overflow, tf.int64))
      return bad

    bad = tf.cond(finite if labelled is None else finite & labelled, apply, skip)
    if self.loss_scale is not None:
      self.loss_scale.update(finite)
    self.global_step.assign_add(1)
    for name in task_names:
      self.task_steps[name].assign_add(1)
    return bad

  def _task_report(self, name, labels, predictions, features):
    """(loss value to minimise, ({"loss": Ratio, metric: its statistics} for the logs,
    units)) of task `name` on a batch."""
    task = self.tasks[name]
    ratios = {"loss": task.loss(labels[name], predictions[name], features)}
    ratios.update({m: self.log_layout.metric(name, m).statistics(labels[name], predictions[name],
                                                                 features)
                   for m in task.metrics})
    return ratios["loss"].value(), (ratios, task.count_units(labels[name], features))

  def _initial_accumulators(self):
    """Loop accumulators: log sums [slots], steps per task [tasks], non-finite count, the
    (task index, global step) of the first non-finite step, or (-1, -1), and per task the
    steps where its loss_count disagreed with its loss's count (distributed joint steps)."""
    return (self.log_layout.zeros(), tf.zeros([len(self.tasks)]),
            tf.constant(0, tf.int64), tf.constant([-1, -1], tf.int64),
            tf.zeros([len(self.tasks)], tf.int64))

  @staticmethod
  def _note_first_bad(first_bad, bad, task_index, step):
    return tf.where((bad > 0) & (first_bad[0] < 0),
                    tf.stack([tf.cast(task_index, tf.int64), step]), first_bad)

  def culprit(self, index):
    """What a first_bad task index names: a task, or the joint gradient of all tasks."""
    culprits = [f"task '{n}'" for n in self.tasks] + ["the joint gradient of all tasks"]
    return culprits[int(index)]

  def _raise_if_nonfinite(self, nonfinite, first_bad):
    if nonfinite and int(self.nonfinite_steps.numpy()) > self.max_nonfinite_steps:
      task, step = first_bad
      raise NonFiniteError(
          f"Non-finite loss or gradient in {self.culprit(task)} at global step "
          f"{int(step)}; the update was not applied ({int(self.nonfinite_steps.numpy())} such "
          f"steps in all, {self.max_nonfinite_steps} allowed).")

  def _replica_share(self, key, names, variables, features, labels, scales, labelled,
                     coefficients, part_scales=None):
    """One replica's part of a distributed step (compiled per device): the forward pass on its
    batch and the gradients (`_replica_gradients`) of its shares of the task losses, shares
    = scales x loss totals [K] (each replica's share of a task's loss over all replicas);
    `coefficients` [K] weigh the shares in the objective, `labelled` [K] says which tasks
    have a label over all replicas.

    With `part_scales` [S, K] (1 / `_part_counts`: a method of S samples of the batch), the
    shares differentiated are the S x K ones of the batch's parts (`_part_shares`).

    Returns (the gradients, as `_replica_gradients` gives them, loss totals [K], loss counts
    [K], log vector, this replica's new Keras state values), all of this replica's batch, to
    be summed over replicas (the reached variables' indices are kept in
    Replicas.reached[key], the state's in Replicas.updated[key]).
    """
    rows = self._per_task_rows()
    with tf.GradientTape(persistent=rows) as tape:
      predictions, updates = self._forward(features, names)
      reports = {n: self._task_report(n, labels, predictions, features)[1] for n in names}
      totals = tf.stack([reports[n][0]["loss"].total for n in names])
      shares = totals * scales
      objective = tf.reduce_sum(coefficients * shares)
      # Each share taken on the tape, for per-task gradients.
      pieces = tf.unstack(shares) if rows else None
      if rows and part_scales is not None:
        pieces = self._part_shares(features, labels, part_scales)
    self._check_reads(tape, f"The step of {names}")
    grads, self._replicas.reached[key] = self._replica_gradients(
        key, tape, objective, pieces, variables, labelled)
    self._replicas.updated[key] = [i for i, _ in updates]
    counts = tf.stack([reports[n][0]["loss"].count for n in names])
    return (grads, totals, counts, self.log_layout.step_vector(features, reports),
            [value for _, value in updates])

  def _part_counts(self, names, features, labels):
    """[S, K]: each task's loss count over all replicas in each of S parts of the batch, for
    a method that takes S samples of each task's gradient (JointTrainer's SDMGrad and MoDo);
    None (this default) for the others."""
    del names, features, labels

  def _part_shares(self, features, labels, part_scales):
    """The S x K shares of a replica's batch parts, part after part, each from its own
    forward pass (see `_part_counts`)."""
    raise NotImplementedError

  def _per_task_rows(self):
    """Whether each replica gives each task's gradient on the shared variables (a joint
    trainer's gradient method or non-linear weighting) rather than one gradient."""
    return False

  def _replica_gradients(self, key, tape, objective, shares, variables, labelled):
    """(gradients of `objective` for the `variables` it reaches, their indices); with
    `_per_task_rows`, JointTrainer's per-task rows (`shares`: the K shares on the tape)."""
    del key, shares, labelled
    grads = self._unscaled_gradient(tape, objective, variables)
    reached = [i for i, g in enumerate(grads) if g is not None]
    return [tf.convert_to_tensor(grads[i]) for i in reached], reached

  def _loss_coefficients(self, labelled):
    """[K] weights of the task losses' shares in each replica's objective (their sum: 1)."""
    return tf.ones(labelled.shape)

  def _reduced_gradients(self, key, grads, losses, labelled, variables):
    """Across replicas, from the summed `_replica_gradients`: (gradients, the variables they
    update, the loss whose finiteness guards the step, extra log vector or None, a function
    to run with an applied update or None). `losses` [K]: the task losses over all replicas."""
    del labelled
    reached = [variables[i] for i in self._replicas.reached[key]]
    return grads, reached, tf.reduce_sum(losses), None, None

  def _after_distributed_apply(self, applied, features, labels, losses, counts):
    """Runs after a distributed step's update (`applied`: bool scalar, whether it was;
    `losses`, `counts` [K]: the task losses and their counts over all replicas); nothing
    here (a joint trainer's FAMO takes the losses after the update)."""
    del applied, features, labels, losses, counts

  def _distributed_step(self, key, names, variables, optimizer, features, labels, *,
                        count_first, active=None):
    """A step over all replicas: each replica's share (`_replica_share`), summed; then the
    non-finite guard, clipping and one update, outside the compiled part.

    Each task's loss is its summed total over the summed count. With `count_first` the
    counts come first from the tasks' loss_count and divide each replica's totals before
    its backward pass (needed for several tasks); else (one task) the summed gradient is
    divided afterwards. `active(reached variables, counts [K]) -> one bool or None per
    variable` says which variables a step with those summed counts moves.

    Returns (log vector, 1 if skipped as non-finite, culprit index, per task 1 where
    loss_count disagreed with the loss's count).
    """
    replicas = self._replicas
    k = len(names)
    part_counts = None
    if count_first:
      part_counts = self._part_counts(names, features, labels)
      if part_counts is not None:  # The parts partition the batch: one counting pass.
        counted = tf.reduce_sum(part_counts, 0)
      else:
        counted = replicas.sum(replicas.run(
            lambda f, l: tf.stack([self.tasks[n].loss_count(l[n], f) for n in names]),
            (features, labels)))
      scales, labelled = 1.0 / tf.maximum(counted, 1.0), counted > 0
    else:
      scales, labelled = tf.ones([k]), tf.ones([k], tf.bool)
    inputs = (features, labels, scales, labelled, self._loss_coefficients(labelled))
    if part_counts is not None:
      inputs += (1.0 / tf.maximum(part_counts, 1.0),)
    share = replicas.compiled(
        lambda f, l, s, m, c, *p: self._replica_share(key, names, variables, f, l, s, m, c, *p),
        jit_compile=self._jit_compile, name=key)
    grads, totals, counts, log, state = replicas.sum(replicas.run(share, inputs))
    if count_first:
      mismatched = tf.cast(tf.not_equal(counts, counted), tf.int64)
    else:
      scales = 1.0 / tf.maximum(counts, 1.0)
      grads = tf.nest.map_structure(lambda g: g * scales[0], grads)
      mismatched = tf.zeros([k], tf.int64)
    losses = totals * scales
    grads, reached, objective, extra_log, on_apply = self._reduced_gradients(
        key, grads, losses, counts > 0, variables)
    if extra_log is not None:
      log += extra_log
    grads, reached, finite = self._checked(grads, reached, objective)
    labelled = {n: counts[i] > 0 if k > 1 else None for i, n in enumerate(names)}
    state = [_mean_of(total, replicas.count) for total in state]  # One value for every copy.
    state_updates = self._state_updates(zip(replicas.updated[key], state), labelled)
    any_labelled = tf.reduce_any(counts > 0)
    bad = self._apply_if_finite(finite, optimizer, grads, reached, names,
                                None if active is None else active(reached, counts),
                                on_apply=on_apply, state_updates=state_updates,
                                labelled=any_labelled)
    self._after_distributed_apply(finite[0] & finite[1] & any_labelled, features, labels,
                                  losses, counts)
    loss_finite = tf.concat([tf.math.is_finite(losses), [False]], 0)
    culprit = tf.argmin(tf.cast(loss_finite, tf.int32), output_type=tf.int32)
    return log, bad, culprit, mismatched

  def evaluation_weights(self):
    """A context in which the model holds the weights to evaluate and export: the weight
    average if the trainer keeps one, else the trained weights as they are (eager only)."""
    if self.weight_average is None:
      return contextlib.nullcontext()
    return self.weight_average.swapped_in()

  def train(self, num_steps):
    """Runs `num_steps` steps; returns their trainers.logs.LoopLogs (seconds left at 0)."""
    require_positive("num_steps", num_steps)
    self._sync_inputs()
    self._inputs.positions = None  # Unknown until the loop has returned.
    overflows = int(self._overflows.count.numpy())
    try:
      sums, counts, nonfinite, first_bad, mismatched = self._loop(
          tf.constant(num_steps, tf.int32))
    except tf.errors.OperatorNotAllowedInGraphError as e:
      raise traced_control_flow(e, "The training step") from None
    except Exception:
      if self._refusal.error is not None:
        raise self._refusal.error from None
      raise
    self._inputs.positions = self._positions()
    for name, steps in zip(self.tasks, mismatched.numpy()):
      if steps:
        raise ConfigError(f"Task '{name}': its loss_count disagrees with the count of its loss "
                          f"in {steps} step(s); under a strategy they must be equal.")
    nonfinite = int(nonfinite)
    first_bad = first_bad.numpy()
    self._raise_if_nonfinite(nonfinite, first_bad)
    logs = self.log_layout.to_logs(sums.numpy(), counts.numpy(), steps=num_steps,
                                   step=int(self.global_step.numpy()), nonfinite_steps=nonfinite)
    return dataclasses.replace(
        logs, overflow_steps=int(self._overflows.count.numpy()) - overflows,
        first_nonfinite=(self.culprit(first_bad[0]), int(first_bad[1])) if nonfinite else None)

  def _loop_impl(self, num_steps):
    """The tf.function body running `num_steps` steps (a tf.while_loop of `_loop_step`);
    returns the loop accumulators (`_initial_accumulators`)."""
    def body(i, *accumulators):
      return (i + 1, *self._loop_step(*accumulators))
    num_steps = tf.convert_to_tensor(num_steps)
    _, *accumulators = tf.while_loop(lambda i, *_: i < num_steps, body,
                                     (tf.zeros([], num_steps.dtype),
                                      *self._initial_accumulators()))
    return tuple(accumulators)

  def _loop_step(self, sums, counts, nonfinite, first_bad, mismatched):
    """One step of the loop on its next batch: the accumulators updated."""
    raise NotImplementedError

  def step_functions(self):
    """The compiled per-step tf.functions, by name (for tracing and compile counts)."""
    raise NotImplementedError

  def optimizer_map(self):
    """{name: optimizer} of every optimizer the trainer steps (for logs and resume)."""
    raise NotImplementedError

  def step_trace_counts(self):
    """{step function name: how many times it has been traced}; 1 each after warm-up."""
    return {n: f.experimental_get_tracing_count() for n, f in self.step_functions().items()}

