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

from mtlcore import weighting as weighting_lib
from mtlcore.errors import ConfigError
from mtlcore.ownership import SHARED
from mtlcore.tasks import Ratio
from mtlcore.trainers.logs import LogLayout
from mtlcore.trainers.trainer import Trainer


class JointTrainer(Trainer):
  """Trains all tasks at once on batches that carry labels for them (some may be missing)."""

  def __init__(self, *, model, tasks, optimizer, dataset, loss_weights=None, weighting=None,
               seed=0, jit_compile=True, clip_norm=None, max_nonfinite_steps=0,
               weight_average=None, frozen_variables=(), loss_scale=None, name=None):
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

  def _check_distributable(self):
    """What joint training under a strategy needs: a weighting linear in the task losses
    (each replica differentiates its share of the total), and with several tasks each task's
    loss_count (the global counts are summed before the backward pass)."""
    if type(self.weighting) is not weighting_lib.Weighting:
      raise ConfigError(f"--weighting={self.weighting.name} does not run under a tf.distribute "
                        f"strategy; use sum or static (fixed weights) there.")
    if len(self.tasks) > 1:
      missing = [n for n, t in self.tasks.items() if t.loss_count is None]
      if missing:
        raise ConfigError(f"Task '{missing[0]}' has no loss_count: joint training of several "
                          f"tasks under a strategy needs each task's (mtlcore.tasks.Task).")

  def _objective(self, losses, labelled):
    return self.weighting.total(losses, labelled)[0]

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
      predictions, updates = self._forward(features, list(self.tasks))
      total, losses, reports, (vector, labelled, weights) = self._losses(
          predictions, features, labels)
      task_losses = [losses[n] for n in self.tasks]  # Each taken on the tape.
      if w.needs_task_gradients:  # On the tape: the K losses, their sum, scaled for fp16.
        differentiated = w.task_losses(vector, labelled)
        plain_sum = tf.reduce_sum(differentiated)
        scale = None if self.loss_scale is None else self.loss_scale.scale.read_value()
        scaled = tf.unstack(differentiated if scale is None else differentiated * scale)
    self._check_reads(tape, "The joint step")
    if w.needs_task_gradients:
      grads, reached, finite, weights, cosines = self._combined_gradients(
          tape, scaled, scale, plain_sum, variables, labelled)
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

  def _losses_after(self, weighting, features, labels):
    """The task losses [K] on this batch with the variables as the update left them (a
    second forward pass, same dropout masks: the step seed has not advanced), for a method
    that needs them (FAMO); else None. Runs inside the applied branch, after the update."""
    if not weighting.needs_losses_after_update:
      return None
    predictions, _ = self._forward(features, list(self.tasks))  # Its Keras state is dropped.
    return tf.stack([self.tasks[n].loss(labels[n], predictions[n], features).value()
                     for n in self.tasks])

  def _combined_gradients(self, tape, scaled, scale, plain_sum, variables, labelled):
    """A gradient method's update: each task's gradient on the shared variables it reaches,
    flattened to [K, P] and combined by the weighting; each task-owned variable (a head, a
    task's trunk part: mtlcore.ownership; a task's weighting variable) its own task's
    gradient (that of `plain_sum`, the sum of the K losses, which reaches a task's variables
    by its task only). `scaled`: the K losses (scalars taken on the tape) times the loss scale
    `scale` (None: no scaling). `labelled` (bool [K]) tells the method which rows take part.

    The K rows are K backward passes (`tape.gradient` of each loss). One Jacobian instead
    (`tape.jacobian`) was tried on the default BiLSTM step under XLA (mtl-bench, AMD EPYC
    2 cores, benchmarks/RESULTS.md): vectorised by pfor it does not compile (pfor's
    TensorList ops over the LSTM's loop), and as a while loop over the tasks the pcgrad step
    took 6.90x `sum`'s; with K passes, 1.52x (another invocation of the same command).

    Returns `_gradients`' (grads, reached variables, finite) plus (weights [K], cosines [K]).
    """
    shared = [v for v in variables if self._task_of(v) is SHARED]
    own = [v for v in variables if self._task_of(v) is not SHARED]
    per_task = [tape.gradient(loss, shared) for loss in scaled]
    reached = [i for i in range(len(shared)) if any(g[i] is not None for g in per_task)]
    targets = [shared[i] for i in reached]
    flat = tf.stack([
        tf.concat([tf.reshape(tf.zeros_like(shared[i]) if g[i] is None
                              else tf.convert_to_tensor(g[i]), [-1]) for i in reached], 0)
        for g in per_task])  # [K, P]
    if scale is not None:
      flat = flat / scale
    head_grads = self._unscaled_gradient(tape, plain_sum, own)
    combined, weights = self.weighting.combine_gradients(flat, self.step_seed(), labelled)
    pieces = tf.split(combined, [v.shape.num_elements() for v in targets])
    shared_grads = [tf.reshape(p, v.shape) for p, v in zip(pieces, targets)]
    grads, reached_vars, finite = self._checked(shared_grads + head_grads, targets + own,
                                                plain_sum)
    return grads, reached_vars, finite, weights, weighting_lib.cosines_to_the_rest(flat)

  def _active(self, variables, labelled):
    """Per variable, whether this batch moves it: a task-owned variable (its head, its trunk
    parts, its weighting variables) only if its task has a label in the batch (`labelled`:
    task -> bool scalar; partial labels); None (always) for the shared ones, which some
    task's loss reaches."""
    owners = [self._task_of(v) for v in variables]
    return [None if owner is SHARED else labelled[owner] for owner in owners]

  def _task_of(self, variable):
    """The task that owns `variable` (a weighting's own per-task variable, else the model's
    owner map), or SHARED."""
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
          count_first=len(names) > 1,
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
