"""JointTrainer: a batch carries labels for several tasks; one combined update.

By default the total loss is sum_t w_t * loss_t (w_t = 1 unless `loss_weights` says
otherwise), where loss_t is task t's Ratio divided out (e.g. per labelled token); a
`weighting` (mtlcore.weighting) may instead learn or adapt the weights, or combine the tasks'
gradients on the shared variables (PCGrad, CAGrad, UPGrad). The trunk runs once per batch
and every head reads it; one optimizer holds the state of all variables. Labels may be missing
(the task's loss counts only what is labelled); a head whose task has no label in a batch,
and its optimizer slots, are left bitwise unchanged by that step.
"""

import tensorflow as tf

try:  # XLA's optimisation barrier (what jax.lax.optimization_barrier is); TensorFlow's own.
  from tensorflow.compiler.tf2xla.python.xla import optimization_barrier as _xla_barrier
except ImportError:  # pragma: no cover - a TensorFlow without it: the rows as they are.
  _xla_barrier = None

from mtlcore import weighting as weighting_lib
from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.tasks import Ratio
from mtlcore.trainers.logs import LogLayout
from mtlcore.trainers.trainer import Trainer

# The owner of a weighting's variable whose row k is task k's (Weighting.task_rows).
TASK_ROWS = object()


class JointTrainer(Trainer):
  """Trains all tasks at once on batches that carry labels for them (some may be missing)."""

  def __init__(self, *, model, tasks, optimizer, dataset, loss_weights=None, weighting=None,
               seed=0, jit_compile=True, clip_norm=None, max_nonfinite_steps=0,
               weight_average=None, frozen_variables=(), loss_scale=None,
               task_gradients="parameters", name=None):
    """Args:
      model: a MultiTaskModel with a head for every task.
      tasks: sequence of Task.
      optimizer: one optimizer (not yet built) for all of the model's variables.
      dataset: a function `start -> tf.data.Dataset` (or a dataset) of (features, labels),
        labels a dict with every task's labels (a missing label is an id < 0 where the task's
        loss supports it), endless and beginning at batch `start` (see trainers.trainer). Its
        position is the global step.
      loss_weights: dict task name -> non-negative float; missing tasks weigh 1.
      weighting: a mtlcore.weighting.Weighting over the tasks' names in order (default: the
        fixed `loss_weights`). A method other than fixed weights logs TASK/weight (and, for
        gradient methods, TASK/cosine) every step; its variables are trained by `optimizer`
        and its state is checkpointed with the trainer.
      task_gradients: where a gradient method takes each task's gradient: "parameters" (the
        shared variables of the owner map, one backward pass through the trunk per task) or
        "representation" (the one representation every head reads, [K, N] rows over its
        B x ... x H values; the combined row is then sent back through the trunk in one
        backward pass). "representation" needs every head to read the same representation,
        a trunk with no task-owned parts and one device.
      seed, jit_compile, clip_norm, max_nonfinite_steps, weight_average, frozen_variables,
        loss_scale, name: as for AlternatingTrainer.
    """
    super().__init__(model=model, tasks=tasks, seed=seed, clip_norm=clip_norm,
                     max_nonfinite_steps=max_nonfinite_steps, jit_compile=jit_compile,
                     weight_average=weight_average, frozen_variables=frozen_variables,
                     loss_scale=loss_scale, name=name)
    loss_weights = dict(loss_weights or {})
    unknown = [n for n in loss_weights if n not in self.tasks]
    if unknown:
      raise ConfigError(f"Loss weights name unknown task(s) {unknown}; tasks are "
                        f"{list(self.tasks)}.")
    bad = {n: w for n, w in loss_weights.items() if not (isinstance(w, (int, float)) and w >= 0)}
    if bad:
      raise ConfigError(f"Loss weights must be non-negative numbers, got {bad}.")
    self.loss_weights = {n: float(loss_weights.get(n, 1.0)) for n in self.tasks}
    if weighting is None:
      weighting = weighting_lib.Weighting(list(self.tasks), list(self.loss_weights.values()),
                                          name="static")
    elif loss_weights:
      raise ConfigError("Give loss_weights or a weighting, not both.")
    if tuple(weighting.task_names) != tuple(self.tasks):
      raise ConfigError(f"The weighting is over tasks {list(weighting.task_names)}, the "
                        f"trainer's are {list(self.tasks)}.")
    self.weighting = weighting
    self._shared_representation = self._representation_read(task_gradients)
    self._state_columns = None
    if weighting.needs_gradient_state:  # Its state has a column per shared parameter.
      self._state_columns = self._by_owner(self._variables())[0]
      weighting.build(sum(v.shape.num_elements() for v in self._state_columns))
    if self._replicas.distributed:
      self._check_distributable()
    if weighting.needs_layer_norms:  # The first representation any head reads, in trunk order.
      read = {model.heads[n].reads for n in self.tasks}
      first = next(r for r in model.trunk.output_sizes if r in read)
      self.gradnorm_layer = self.trained(model.trunk.variables_of(first))
    extra = ()
    if type(weighting) is not weighting_lib.Weighting:
      extra = ("weight", "cosine") if weighting.needs_task_gradients else ("weight",)
    self.log_layout = LogLayout(self.tasks, extra)
    self.optimizer = optimizer
    self.optimizer.build(self._variables())
    self._set_inputs({"joint": dataset}, {"joint": self.global_step})
    self._step = tf.function(self._joint_step, jit_compile=jit_compile, autograph=False)
    # Under a strategy: the gradient method's aggregation, in the cross-replica part.
    self._aggregate = tf.function(self._aggregate_rows, jit_compile=jit_compile,
                                  autograph=False)

  def _representation_read(self, task_gradients):
    """The name of the representation a gradient method differentiates the task losses by
    ("representation"), or None ("parameters"). Raises ConfigError where there is no one
    shared representation to take the task gradients on."""
    if task_gradients == "parameters":
      return None
    if task_gradients != "representation":
      raise ConfigError(f"task_gradients must be 'parameters' or 'representation', got "
                        f"{task_gradients!r}.")
    w = self.weighting
    if not w.needs_task_gradients or w.needs_gradient_state or w.samples > 1:
      raise ConfigError(f"--task_gradients=representation applies to a gradient method "
                        f"without per-parameter state or samples, not --weighting={w.name}.")
    if self._replicas.distributed:
      raise ConfigError("--task_gradients=representation runs on one device; under a "
                        "strategy use --task_gradients=parameters.")
    reads = {n: self.model.heads[n].reads for n in self.tasks}
    if len(set(reads.values())) > 1:
      raise ConfigError(f"--task_gradients=representation needs every head to read one "
                        f"representation; the heads read {reads}.")
    owned = sorted({str(self._task_of(v)) for v in self.model.owners.trunk_variables
                    if self._task_of(v) is not SHARED})
    if owned:
      raise ConfigError(f"--task_gradients=representation needs a trunk shared by every "
                        f"task; this one has parts of task(s) {owned}.")
    return next(iter(reads.values()))

  def _check_distributable(self):
    """What joint training of several tasks under a strategy needs: each task's loss_count
    (the global counts are summed before the backward pass; for SDMGrad's and MoDo's parts
    of the batch too, even with one task)."""
    if len(self.tasks) > 1 or self.weighting.samples > 1:
      missing = [n for n, t in self.tasks.items() if t.loss_count is None]
      if missing:
        raise ConfigError(f"Task '{missing[0]}' has no loss_count: joint training of several "
                          f"tasks, or with --weighting={self.weighting.name}, under a "
                          f"strategy needs each task's (mtlcore.tasks.Task).")

  def _variables(self):
    """What the optimizer updates: the model's trained variables, then the weighting's."""
    return self.trained(self.model.variables_to_train()) + list(
        self.weighting.trainable_variables)

  def _trainer_owned(self):
    return tuple(self.weighting.trainable_variables)

  def weighted_losses(self, features, labels, *, training, seed):
    """Returns (total loss, {task: loss}, {task: (log ratios, units)}) for one batch; each
    task's loss is its Ratio's value, the total what the weighting method differentiates
    (for a gradient method: their sum)."""
    predictions, _ = self.model.forward(features, tasks=list(self.tasks), training=training,
                                        seed=seed)
    total, losses, reports, _ = self._losses(predictions, features, labels)
    return total, losses, reports

  def _losses(self, predictions, features, labels):
    """weighted_losses' result from the predictions, plus (losses [K], labelled [K],
    weights [K])."""
    losses, reports = {}, {}
    for n in self.tasks:
      losses[n], reports[n] = self._task_report(n, labels, predictions, features)
    vector = tf.stack([losses[n] for n in self.tasks])
    labelled = tf.stack([reports[n][0]["loss"].count > 0 for n in self.tasks])
    total, weights = self.weighting.total(vector, labelled, seed=self.step_seed())
    return total, losses, reports, (vector, labelled, weights)

  def _joint_step(self, features, labels):
    """One joint step: returns (log vector, 1 if skipped as non-finite, culprit).

    The culprit is the index of the first task whose loss is non-finite, or len(tasks) when
    every loss is finite and only the gradient is not.
    """
    variables = self._variables()
    w = self.weighting
    with tf.GradientTape(persistent=w.needs_task_gradients or w.needs_layer_norms) as tape:
      if self._shared_representation is None:
        predictions, updates = self._forward(features, list(self.tasks))
      else:  # Each head reads a copy: the task rows come from one pass through the heads.
        predictions, updates, representations, head_inputs = self._forward(
            features, list(self.tasks), representations=True, head_inputs=True)
        shared_representation = representations[self._shared_representation]
        copies = [head_inputs.copies[n] for n in self.tasks]
        self._refuse_shared_reads({n: r for n, r in head_inputs.shared_reads.items() if r})
      total, losses, reports, (vector, labelled, weights) = self._losses(
          predictions, features, labels)
      task_losses = [losses[n] for n in self.tasks]  # Each taken on the tape.
      if w.needs_task_gradients:  # On the tape: the K losses, their sum, scaled for fp16.
        differentiated = w.task_losses(vector, labelled)
        plain_sum = tf.reduce_sum(differentiated)
        scale = None if self.loss_scale is None else self.loss_scale.scale.read_value()
        if w.samples > 1:  # SDMGrad, MoDo: the K losses on each part of the batch.
          scaled = [l if scale is None else l * scale
                    for l in self._part_losses(features, labels)]
          row_scales = None
        else:
          # The task losses themselves, not the rows of their stack: a row of the stack
          # differentiates back through every task's loss and head (with zeros), K x K head
          # backward passes; on the representation that was 22.8 against 6.7 ms per step
          # (mgda, 16 synthetic tasks, AMD EPYC). A method that rescales its losses
          # (`row_scales`) scales their gradient rows instead; on the representation the
          # rows are those of `plain_sum`, the rescaled losses, already.
          scaled = [l if scale is None else l * scale for l in task_losses]
          row_scales = (_row_scales(w, vector, labelled)
                        if self._shared_representation is None else None)
    self._check_reads(tape, "The joint step")
    if w.needs_task_gradients and self._shared_representation is not None:
      grads, reached, finite, weights, cosines = self._combined_on_representation(
          tape, scale, plain_sum, variables, labelled, shared_representation, copies)
    elif w.needs_task_gradients:
      grads, reached, finite, weights, cosines = self._combined_gradients(
          tape, scaled, scale, plain_sum, variables, labelled, row_scales)
    else:
      grads, reached, finite = self._gradients(tape, total, variables)
      cosines = None
    layer_norms = None
    if w.needs_layer_norms:
      layer_norms = tf.stack([
          tf.linalg.global_norm([g for g in self._unscaled_gradient(tape, loss, self.gradnorm_layer)
                                 if g is not None])
          for loss in task_losses])
    for k, n in enumerate(self.tasks):
      extra = {"weight": weights[k], "cosine": None if cosines is None else cosines[k]}
      reports[n][0].update({m: Ratio(extra[m], tf.constant(1.0))
                            for m in self.log_layout.extra_metrics})
    has_label = {n: ratios["loss"].count > 0 for n, (ratios, _) in reports.items()}
    bad = self._apply_if_finite(finite, self.optimizer, grads, reached, list(self.tasks),
                                self._active(reached, has_label),
                                on_apply=lambda: w.after_step(
                                    vector, labelled, layer_norms,
                                    losses_after=self._losses_after(w, features, labels)),
                                state_updates=self._state_updates(updates, has_label),
                                labelled=tf.reduce_any(labelled))
    loss_finite = tf.stack([tf.math.is_finite(losses[n]) for n in self.tasks] + [False])
    culprit = tf.argmin(tf.cast(loss_finite, tf.int32), output_type=tf.int32)
    return self.log_layout.step_vector(features, reports), bad, culprit

  def _part_losses(self, features, labels, part_scales=None):
    """For a method of S samples (the weighting's `samples`), per part of the batch
    (`_parts`): a forward pass on the part, its dropout seeded apart from the step's and the
    other parts', then the K task losses, part after part: S x K scalars on the tape. Each
    is the part's mean loss (0 for a task with no label in the part), or with `part_scales`
    [S, K] its total times the scale (under a strategy: a replica's share of the part's loss
    over all replicas). Only the batch's features and labels are split, so a head may
    predict in any layout (the language model's sampled logits are not batch-major)."""
    samples, names, seed = self.weighting.samples, list(self.tasks), self.step_seed()
    size = tf.nest.flatten(labels)[0].shape[0]
    if size is not None and size < samples:  # A part would be empty: its rows zero.
      error = ConfigError(f"--weighting={self.weighting.name} splits each batch into "
                          f"{samples} parts; a batch of {size} example(s) leaves one empty "
                          f"(the batch size, per replica, must be at least {samples}).")
      self._refusal.error = error
      raise error
    losses = []
    for i, (f, l) in enumerate(zip(_parts(features, samples), _parts(labels, samples))):
      # Step seeds are (trainer seed, n >= 0): a part's (trainer seed, -(n S + i) - 1).
      predictions, _ = self._forward(f, names, seed=tf.stack([seed[0],
                                                              -(seed[1] * samples + i) - 1]))
      for k, n in enumerate(names):
        ratio = self.tasks[n].loss(l[n], predictions[n], f)
        losses.append(ratio.value() if part_scales is None else ratio.total * part_scales[i, k])
    return losses

  def _part_counts(self, names, features, labels):
    samples = self.weighting.samples
    if samples == 1:
      return None
    replicas = self._replicas
    return replicas.sum(replicas.run(
        lambda f, l: tf.stack([tf.stack([self.tasks[n].loss_count(lp[n], fp) for n in names])
                               for fp, lp in zip(_parts(f, samples), _parts(l, samples))]),
        (features, labels)))

  def _part_shares(self, features, labels, part_scales):
    return self._part_losses(features, labels, part_scales)

  def _losses_after(self, weighting, features, labels):
    """The task losses [K] on this batch with the variables as the update left them (a
    second forward pass, same dropout masks: the step seed has not advanced), for a method
    that needs them (FAMO); else None. Runs inside the applied branch, after the update."""
    if not weighting.needs_losses_after_update:
      return None
    predictions, _ = self._forward(features, list(self.tasks))  # Its Keras state is dropped.
    return tf.stack([self.tasks[n].loss(labels[n], predictions[n], features).value()
                     for n in self.tasks])

  def _combined_gradients(self, tape, scaled, scale, plain_sum, variables, labelled,
                          row_scales=None):
    """A gradient method's update: each task's gradient on the shared variables it reaches,
    flattened to [K, P] and combined by the weighting; each task-owned variable (a head, a
    task's trunk part: mtlcore.ownership; a task's weighting variable) its own task's
    gradient (that of `plain_sum`, the sum of the K losses, which reaches a task's variables
    by its task only). `scaled`: the K losses (scalars taken on the tape) times the loss scale
    `scale` (None: no scaling). `labelled` (bool [K]) tells the method which rows take part.
    `row_scales` ([K] or None, `_row_scales`): the factor of each task's row, for a method
    that combines the gradients of rescaled losses.

    The K rows are K backward passes (`tape.gradient` of each loss). One Jacobian instead
    (`tape.jacobian`) was tried on the default BiLSTM step under XLA (mtl-bench, AMD EPYC
    2 cores, benchmarks/RESULTS.md): vectorised by pfor it does not compile (pfor's
    TensorList ops over the LSTM's loop), and as a while loop over the tasks the pcgrad step
    took 6.90x `sum`'s; with K passes, 1.52x (another invocation of the same command).
    A loop over the tasks of the trunk's backward pass alone (each task's gradient on the
    representation its head reads first, then a `tf.while_loop` whose body sends task k's
    through the trunk: a graph constant in K in the trunk) was tried as well (2026-12-04,
    same CPU kind, the machine loaded by other runs, one process): on the default BiLSTM
    step with pcgrad, 3,827 against 436 ms per step for the K passes (8.8x; the rows equal
    to 4.3e-7);
    on the synthetic task set (a one-layer trunk) the same speed and the same compile time at
    K = 32 (mgda, 60.7 against 68.5 s): there the graph's growth in K is the heads', the
    losses' and the method's, not the trunk's. Not kept. Nor one backward pass through the
    heads (each reading its own copy of its representation, as on the representation) and
    then one per task through the trunk alone (2026-12-05, AMD EPYC, one process each,
    interleaved rounds, against these K passes): at 16 synthetic tasks from 14% faster
    (nash_mtl) to 14% slower (imtl_g), on the default BiLSTM step within 2% (pcgrad, mgda).

    Returns `_gradients`' (grads, reached variables, finite) plus (weights [K], cosines [K]).
    """
    shared, own = self._by_owner(variables)
    flat, targets = _flat_rows([tape.gradient(loss, shared) for loss in scaled], shared)
    if scale is not None:
      flat = flat / scale
    if row_scales is not None:
      flat = flat * row_scales[:, None]
    flat = self._materialized(flat)
    head_grads = self._unscaled_gradient(tape, plain_sum, own)
    combined, weights = self._combine(flat, targets, self.step_seed(), labelled)
    grads, reached_vars, finite = self._checked(_unflattened(combined, targets) + head_grads,
                                                targets + own, plain_sum)
    # With several samples (SDMGrad, MoDo) the cosines are the last sample's, the update's.
    cosines = weighting_lib.cosines_to_the_rest(flat[-len(self.tasks):])
    return grads, reached_vars, finite, weights, cosines

  def _refuse_shared_reads(self, reads_shared):
    """ConfigError (raised as itself by `train`) where a head reads shared trunk variables
    itself: on the representation their part of its task's gradient would be lost."""
    if reads_shared:
      task, names = next(iter(reads_shared.items()))
      self._refusal.error = ConfigError(
          f"--task_gradients=representation: the head of task '{task}' reads the trunk's "
          f"shared variable(s) {list(names)} itself, not through its representation; their "
          f"gradient would be lost. Use --task_gradients=parameters.")
      raise self._refusal.error

  def _combined_on_representation(self, tape, scale, plain_sum, variables, labelled,
                                  representation, copies):
    """`_combined_gradients` with each task's gradient taken on the shared `representation`
    (the tensor every head reads, [B, ..., H] in the compute type) instead of the shared
    variables. Each head reads its own copy of it (`copies`, in task order), so one backward
    pass of `plain_sum` (the sum of the K losses the method differentiates) through the
    heads gives every task's row [K, N] (N its number of values, float32: the gradient on
    copy k is task k's loss's alone) and each task-owned variable's own task's gradient at
    once; the method combines the rows into one [N] direction, which one backward pass
    through the trunk (the representation's vector-Jacobian product) turns into the shared
    variables' gradient. A method that rescales its losses gets the rescaled losses' rows,
    as `_combined_gradients` with its row scales. The weights and cosines are those of the
    representation's rows.

    The rows were K backward passes through the heads before (`tape.gradient` of each loss
    on the representation), beside the one the head variables needed: at 16 synthetic tasks
    pcgrad's step took 1.74x `sum`'s that way and takes 1.26x now (two mtl-bench
    invocations, AMD EPYC, benchmarks/RESULTS.md)."""
    shared, own = self._by_owner(variables)
    grads = self._unscaled_gradient(tape, plain_sum, own + list(copies))
    head_grads, row_grads = grads[:len(own)], grads[len(own):]
    zero = tf.zeros_like(representation, tf.float32)
    rows = tf.stack([tf.reshape(zero if g is None else tf.cast(g, tf.float32), [-1])
                     for g in row_grads])
    rows = self._materialized(rows)
    direction, weights = self.weighting.combine_gradients(rows, self.step_seed(), labelled)
    upstream = tf.reshape(direction if scale is None else direction * scale,
                          tf.shape(representation))
    trunk_grads = tape.gradient(representation, shared,
                                output_gradients=tf.cast(upstream, representation.dtype))
    if scale is not None:
      trunk_grads = [None if g is None else tf.convert_to_tensor(g) / scale for g in trunk_grads]
    grads, reached_vars, finite = self._checked(list(trunk_grads) + head_grads, shared + own,
                                                plain_sum)
    return grads, reached_vars, finite, weights, weighting_lib.cosines_to_the_rest(rows)

  def _materialized(self, rows):
    """The task gradient rows, computed once before the method and the cosines read them: in
    an XLA step, behind an optimisation barrier. Measured with and without it in one process,
    interleaved rounds, medians (AMD EPYC, 2 cores): at 16 synthetic tasks mgda 2.04 -> 1.58
    ms per step, pcgrad 1.69 -> 1.24, imtl_g 1.73 -> 1.27, and on the representation mgda
    2.57 -> 1.32, imtl_g 2.33 -> 0.99 (`sum` 0.66); on the BiLSTM sequence model of two tasks
    (benchmarks/RESULTS.md) within 1% either way (mgda, pcgrad, upgrad on the parameters,
    mgda and upgrad on the representation; `sum` 30.0 ms). Outside XLA (and in a TensorFlow
    without the barrier): the rows as they are."""
    if not self._jit_compile or _xla_barrier is None:
      return rows
    return _xla_barrier(rows)[0]

  def _combine(self, rows, targets, seed, labelled):
    """The weighting's (direction over `targets`, weights [K]) from the rows [K, P] over
    `targets`. A method with per-parameter state sees its rows over every shared variable
    (`_state_columns`: zero columns for those this step's losses do not reach), so that a
    column of its state always belongs to the same parameter."""
    if self._state_columns is None:
      return self.weighting.combine_gradients(rows, seed, labelled)
    wide = _regrouped(rows, targets, self._state_columns)
    direction, weights = self.weighting.combine_gradients(wide, seed, labelled)
    return _regrouped(direction[None], self._state_columns, targets)[0], weights

  # Under a tf.distribute strategy (trainers.replicas), a weighting other than fixed
  # weights takes one of two ways, both exact (the update of one device on the global batch):
  # - linear in the losses (uncertainty, imtl_l, dwa, rlw): each replica differentiates its
  #   shares of the task losses weighed by d total / d L_k (which does not depend on the
  #   losses), one backward pass as on one device; the weighting's own variables get
  #   d total / d s from the global losses, across replicas;
  # - otherwise (gradient methods, gls, famo, gradnorm): each replica gives each task's
  #   gradient of its share on the shared variables ([K, P] rows, K backward passes) and the
  #   gradient of the plain sum on the task-owned ones; summed over replicas they are the
  #   global batch's per-task gradients, which the method combines once, across replicas.

  def _distributed_rows(self):
    w = self.weighting
    return w.needs_task_gradients or w.needs_layer_norms or not w.linear_in_losses

  def _per_task_rows(self):
    return self._replicas.distributed and self._distributed_rows()

  def _weighting_seed(self):
    """The int64 [2] seed a weighting draws from: (trainer seed, global step), on one device
    and across replicas alike (each replica's dropout seed differs; the method's does not)."""
    return tf.stack([tf.constant(self._seed, tf.int64), self.global_step.read_value()])

  def _loss_coefficients(self, labelled):
    w = self.weighting
    if type(w) is weighting_lib.Weighting:
      return w.fixed_weights
    if self._distributed_rows():
      return tf.ones([len(self.tasks)])  # Each replica's objective: the plain sum.
    at = tf.ones([len(self.tasks)])  # d total / d L of a linear total is the same anywhere.
    with tf.GradientTape() as tape:
      tape.watch(at)
      total, _ = w.total(at, labelled, seed=self._weighting_seed())
    return tf.stop_gradient(tape.gradient(total, at))

  def _replica_gradients(self, key, tape, objective, shares, variables, labelled):
    if shares is None:
      return super()._replica_gradients(key, tape, objective, shares, variables, labelled)
    owned = {v.ref() for v in self.weighting.trainable_variables}  # Taken across replicas.
    model = [v for v in variables if v.ref() not in owned]
    shared, own = self._by_owner(model)
    rows, targets = _flat_rows([self._unscaled_gradient(tape, s, shared) for s in shares],
                               shared)
    own_grads = self._unscaled_gradient(tape, objective, own)
    own_reached = [v for v, g in zip(own, own_grads) if g is not None]
    index = {v.ref(): i for i, v in enumerate(variables)}
    self._replicas.row_variables[key] = targets
    return ((rows, [tf.convert_to_tensor(g) for g in own_grads if g is not None]),
            [index[v.ref()] for v in targets + own_reached])

  def _reduced_gradients(self, key, grads, losses, labelled, variables):
    w = self.weighting
    reached = [variables[i] for i in self._replicas.reached[key]]
    if type(w) is weighting_lib.Weighting:
      return grads, reached, w.total(losses, labelled)[0], None, None
    seed = self._weighting_seed()
    own_weighting = list(w.trainable_variables)
    with tf.GradientTape() as tape:
      tape.watch(losses)
      if w.needs_task_gradients:
        objective, weights = tf.reduce_sum(w.task_losses(losses, labelled)), None
      else:
        objective, weights = w.total(losses, labelled, seed=seed)
    coefficients, *weighting_grads = tape.gradient(
        objective, [losses] + own_weighting, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    cosines, layer_norms = None, None
    if self._distributed_rows():
      (rows, own_grads), targets = grads, self._replicas.row_variables[key]
      # Row k: the gradient of what task k differentiates (S rows per task, part after
      # part, for a method of S samples).
      scaled = tf.tile(coefficients, [w.samples])[:, None] * rows
      if w.needs_task_gradients:
        direction, weights, staged = self._aggregate(scaled, seed, labelled)
        w.restage(staged)
        cosines = weighting_lib.cosines_to_the_rest(scaled[-len(self.tasks):])
      else:
        direction = tf.linalg.matvec(rows, coefficients, transpose_a=True)
      tasks = list(self.tasks)
      own_vars = reached[len(targets):]
      if w.needs_layer_norms:  # Its shared columns, and each task's own part of the layer.
        layer = {v.ref() for v in self.gradnorm_layer}
        squares = [tf.square(_row_norms(rows, targets, layer))] + [
            tf.one_hot(tasks.index(self._task_of(v)), len(tasks)) * tf.reduce_sum(tf.square(g))
            for g, v in zip(own_grads, own_vars) if v.ref() in layer]
        layer_norms = tf.sqrt(tf.add_n(squares))
      grads = _unflattened(direction, targets) + [
          coefficients[tasks.index(self._task_of(v))] * g for g, v in zip(own_grads, own_vars)]
    trained = [(g, v) for g, v in zip(weighting_grads, own_weighting)]
    extra = {"weight": weights, "cosine": cosines}
    log = self.log_layout.extra_vector({m: extra[m] for m in self.log_layout.extra_metrics})
    on_apply = None
    if not w.needs_losses_after_update:
      on_apply = lambda: w.after_step(losses, labelled, layer_norms)
    return (list(grads) + [g for g, _ in trained], reached + [v for _, v in trained],
            objective, log, on_apply)

  def _aggregate_rows(self, rows, seed, labelled):
    """`_combine` of the globally summed rows [K, P] over the step's row variables, as its own
    compiled function (XLA with jit_compile, as the one-device step's aggregation is):
    traced once, inside the distributed step's cross-replica part. Returns the direction,
    the weights and the state values the method staged (`Weighting.staged_values`), which
    must leave the function to be assigned after the update."""
    direction, weights = self._combine(rows, self._replicas.row_variables["joint"], seed,
                                       labelled)
    return direction, weights, self.weighting.staged_values()

  def _after_distributed_apply(self, applied, features, labels, losses, counts):
    """FAMO across replicas: the losses after the update (each replica's second forward pass
    with the step's dropout masks, summed over replicas), then its after_step if applied."""
    w = self.weighting
    if not w.needs_losses_after_update:
      return
    names = list(self.tasks)

    def totals_after(f, l):
      step = self.global_step.read_value() - 1  # The update's step (the counter moved on).
      predictions, _ = self._forward(f, names, seed=self.step_seed(step))
      return tf.stack([self.tasks[n].loss(l[n], predictions[n], f).total for n in names])

    run = self._replicas.compiled(totals_after, jit_compile=self._jit_compile,
                                  name="joint/losses_after")
    after = self._replicas.sum(self._replicas.run(run, (features, labels)))
    after = after / tf.maximum(counts, 1.0)

    def update():
      w.after_step(losses, counts > 0, losses_after=after)
      return tf.constant(0)

    tf.cond(applied, update, lambda: tf.constant(0))

  def _by_owner(self, variables):
    """(the shared ones of `variables`, the task-owned ones), each in order."""
    owners = [self._task_of(v) for v in variables]
    return ([v for v, o in zip(variables, owners) if o is SHARED],
            [v for v, o in zip(variables, owners) if o is not SHARED])

  def _active(self, variables, labelled):
    """Per variable, whether this batch moves it: a task-owned variable (its head, its trunk
    parts, its weighting variables) only if its task has a label in the batch (`labelled`:
    task -> bool scalar; partial labels); None (always) for the shared ones, which some
    task's loss reaches."""
    owners = [self._task_of(v) for v in variables]
    by_row = lambda: tf.stack([labelled[n] for n in self.tasks])  # [K], for TASK_ROWS.
    return [None if owner is SHARED else by_row() if owner is TASK_ROWS else labelled[owner]
            for owner in owners]

  def _task_of(self, variable):
    """The task that owns `variable` (a weighting's own per-task variable, else the model's
    owner map), TASK_ROWS for a weighting's variable whose row k is task k's, or SHARED."""
    if any(v is variable for v in self.weighting.task_rows()):
      return TASK_ROWS
    for task, owned in self.weighting.task_variables().items():
      if any(v is variable for v in owned):
        return task
    return self.model.owners.owner(variable)

  def _loop_step(self, sums, counts, nonfinite, first_bad, mismatched):
    step = self.global_step.read_value()
    features, labels = next(self._inputs.iterators["joint"])
    log, bad, culprit, mismatch = self._run_step(features, labels)
    return (sums + log, counts + 1.0, nonfinite + bad,
            self._note_first_bad(first_bad, bad, culprit, step), mismatched + mismatch)

  def _run_step(self, features, labels):
    """One step (compiled; under a strategy, per replica): (log vector, 1 if skipped as
    non-finite, culprit, per task 1 if its loss_count disagreed)."""
    names = list(self.tasks)
    if self._replicas.distributed:
      return self._distributed_step(
          "joint", names, self._variables(), self.optimizer, features, labels,
          count_first=len(names) > 1 or self.weighting.samples > 1,
          active=lambda variables, counts: self._active(
              variables, {n: counts[i] > 0 for i, n in enumerate(names)}))
    log, bad, culprit = self._step(features, labels)
    return log, bad, culprit, tf.zeros([len(names)], tf.int64)

  def step_functions(self):
    if self._replicas.distributed:
      return {f"joint/{i}": f for i, f in enumerate(self._replicas.functions("joint"))}
    return {"joint": self._step}

  def optimizer_map(self):
    return {"joint": self.optimizer}


def _row_scales(weighting, losses, labelled):
  """None for a gradient method that combines the task losses' own gradients; for one that
  rescales the losses first (`Weighting.task_losses`, elementwise: f_k(L_k), e.g. imtl's
  e^{s_k} L_k - s_k), [K] f_k'(L_k): the gradient of f_k(L_k) is the loss's gradient row
  times it. Scaling the K rows after the backward passes measured 1.4 ms per compiled step
  (imtl on the representation, 16 synthetic tasks, AMD EPYC), against 7.4 ms differentiating
  each f_k(L_k) on its own (XLA's head backward passes were slower with a runtime factor on
  the upstream gradient) and 22.4 ms (mtl-bench) differentiating the rows of their stack."""
  if type(weighting).task_losses is weighting_lib.Weighting.task_losses:
    return None
  plain = tf.stop_gradient(losses)
  with tf.GradientTape() as tape:
    tape.watch(plain)
    rows = weighting.task_losses(plain, labelled)
  return tape.gradient(rows, plain, unconnected_gradients=tf.UnconnectedGradients.ZERO)


def _parts(nest, samples):
  """`samples` parts of a batch (a nest of tensors with a leading batch axis): part i holds
  the examples i, i + samples, i + 2 samples, ... Strided, so that under a strategy whose
  replicas each hold a multiple of `samples` examples, the replicas' parts i together are one
  device's part i of the global batch."""
  return [tf.nest.map_structure(lambda x, i=i: x[i::samples], nest) for i in range(samples)]


def _flat_rows(per_task, variables):
  """Per-task gradients (K lists, one entry per variable, None where a task does not reach
  it) as rows [K, P] over the variables some task reaches; returns (rows, those
  variables), a task's unreached entries zero."""
  reached = [i for i in range(len(variables)) if any(g[i] is not None for g in per_task)]
  rows = tf.stack([
      tf.concat([tf.reshape(tf.zeros_like(variables[i]) if g[i] is None
                            else tf.convert_to_tensor(g[i]), [-1]) for i in reached], 0)
      for g in per_task])
  return rows, [variables[i] for i in reached]


def _regrouped(rows, variables, wanted):
  """Rows [K, P] whose columns are `variables`' elements in order, as rows over `wanted`'s
  (zero columns for a variable of `wanted` not in `variables`)."""
  pieces = dict(zip([v.ref() for v in variables],
                    tf.split(rows, [v.shape.num_elements() for v in variables], axis=1)))
  return tf.concat([pieces[v.ref()] if v.ref() in pieces else
                    tf.zeros([rows.shape[0], v.shape.num_elements()], rows.dtype)
                    for v in wanted], axis=1)


def _unflattened(direction, variables):
  """A flat [P] vector over `variables` as one tensor per variable, in their shapes."""
  pieces = tf.split(direction, [v.shape.num_elements() for v in variables])
  return [tf.reshape(p, v.shape) for p, v in zip(pieces, variables)]


def _row_norms(rows, variables, wanted):
  """[K]: each row's norm over the columns of the variables whose refs are in `wanted` (the
  rows' columns are `variables`' elements in order); 0 without any."""
  columns, start = [], 0
  for v in variables:
    size = v.shape.num_elements()
    if v.ref() in wanted:
      columns.append(rows[:, start:start + size])
    start += size
  if not columns:
    return tf.zeros([rows.shape[0]])
  return tf.norm(tf.concat(columns, 1), axis=1)

