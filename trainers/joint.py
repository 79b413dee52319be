"""JointTrainer: a batch carries labels for several tasks; one weighted loss, one update.

The total loss is sum_t w_t * loss_t (w_t = 1 unless `loss_weights` says otherwise), where
loss_t is task t's Ratio divided out (e.g. per labelled token). The trunk runs once per batch
and every head reads it; one optimizer holds the state of all variables. Labels may be missing
(the task's loss counts only what is labelled); a head whose task has no label in a batch,
and its optimizer slots, are left bitwise unchanged by that step.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.trainers.trainer import Trainer


class JointTrainer(Trainer):
  """Trains all tasks at once on batches that carry labels for them (some may be missing)."""

  def __init__(self, *, model, tasks, optimizer, dataset, loss_weights=None, seed=0,
               jit_compile=True, clip_norm=None, max_nonfinite_steps=0, weight_average=None,
               frozen_variables=(), loss_scale=None, name=None):
    """Args:
      model: a MultiTaskModel with a head for every task.
      tasks: sequence of Task.
      optimizer: one optimizer (not yet built) for all of the model's variables.
      dataset: a function `start -> tf.data.Dataset` (or a dataset) of (features, labels),
        labels a dict with every task's labels (a missing label is an id < 0 where the task's
        loss supports it), endless and beginning at batch `start` (see trainers.trainer). Its
        position is the global step.
      loss_weights: dict task name -> non-negative float; missing tasks weigh 1.
      seed, jit_compile, clip_norm, max_nonfinite_steps, weight_average, frozen_variables,
        loss_scale, name: as for AlternatingTrainer.
    """
    super().__init__(model=model, tasks=tasks, seed=seed, clip_norm=clip_norm,
                     max_nonfinite_steps=max_nonfinite_steps,
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
    self.optimizer = optimizer
    self.optimizer.build(self.trained(model.trainable_variables))
    self._set_inputs({"joint": dataset}, {"joint": self.global_step})
    self._step = tf.function(self._joint_step, jit_compile=jit_compile)

  def weighted_losses(self, features, labels, *, training, seed):
    """Returns (total loss, {task: loss}, {task: (log ratios, units)}) for one batch; each
    task's loss is its Ratio's value, the total their weighted sum."""
    predictions = self.model(features, tasks=list(self.tasks), training=training, seed=seed)
    losses, reports = {}, {}
    for n in self.tasks:
      losses[n], reports[n] = self._task_report(n, labels, predictions, features)
    total = tf.add_n([self.loss_weights[n] * losses[n] for n in self.tasks])
    return total, losses, reports

  def _joint_step(self, features, labels):
    """One joint step: returns (log vector, 1 if skipped as non-finite, culprit).

    The culprit is the index of the first task whose loss is non-finite, or len(tasks) when
    every loss is finite and only the gradient is not.
    """
    with tf.GradientTape() as tape:
      total, losses, reports = self.weighted_losses(
          features, labels, training=True, seed=self.step_seed())
    grads, reached, finite = self._gradients(tape, total,
                                             self.trained(self.model.trainable_variables))
    bad = self._apply_if_finite(finite, self.optimizer, grads, reached, list(self.tasks),
                                self._active(reached, reports))
    loss_finite = tf.stack([tf.math.is_finite(losses[n]) for n in self.tasks] + [False])
    culprit = tf.argmin(tf.cast(loss_finite, tf.int32), output_type=tf.int32)
    return self.log_layout.step_vector(features, reports), bad, culprit

  def _active(self, variables, reports):
    """Per variable, whether this batch moves it: a head only if its task has a label in the
    batch (partial labels); None (always) for the trunk, which some task's loss reaches."""
    labelled = {n: ratios["loss"].count > 0 for n, (ratios, _) in reports.items()}
    owner = {v.ref(): n for n in self.tasks for v in self.model.heads[n].trainable_variables}
    return [labelled[owner[v.ref()]] if v.ref() in owner else None for v in variables]

  def _loop_impl(self, num_steps):
    sums, counts, nonfinite, first_bad = self._initial_accumulators()
    for _ in tf.range(num_steps):
      step = self.global_step.read_value()
      features, labels = next(self._inputs.iterators["joint"])
      log, bad, culprit = self._step(features, labels)
      sums += log
      counts += 1.0
      nonfinite += bad
      first_bad = self._note_first_bad(first_bad, bad, culprit, step)
    return sums, counts, nonfinite, first_bad

  def step_functions(self):
    return {"joint": self._step}

  def optimizer_map(self):
    return {"joint": self.optimizer}
