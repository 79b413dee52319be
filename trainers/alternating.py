"""AlternatingTrainer: each step trains one task, on what it owns and the shared trunk only.

One optimizer per task, built eagerly on exactly `model.variables_for(task)` (the owner map's
shared variables and the task's own, mtlcore.ownership); one compiled
step per task, built once and kept in a dict. A step of task T computes T's loss on a batch of
T's data and applies its gradients with T's optimizer: no other head's variable and no other
optimizer's slot or counter is touched. A TaskSampler decides which task comes next, inside
the same tf.function that runs the steps (`tf.switch_case` over the per-task steps).
"""

import functools

import tensorflow as tf

from mtlcore.errors import ConfigError
from mtlcore.trainers.trainer import Trainer


class AlternatingTrainer(Trainer):
  """Trains one task per step, chosen by a sampler."""

  def __init__(self, *, model, tasks, optimizers, datasets, sampler, seed=0, jit_compile=True,
               clip_norm=None, max_nonfinite_steps=0, weight_average=None, frozen_variables=(),
               loss_scale=None, name=None):
    """Args:
      model: a MultiTaskModel with a head for every task.
      tasks: sequence of Task.
      optimizers: dict task name -> optimizer (e.g. mtlcore.optimizers.Adam), not yet built.
        One optimizer per task keeps separate Adam moments (and update counts) of the shared
        trunk for each task; the same optimizer given for every task shares them: one set of
        trunk moments that every step moves, one update count for all, and each head's
        moments moved only by its own steps.
      datasets: dict task name -> a function `start -> tf.data.Dataset` (or a dataset) of
        (features, labels) where labels is a dict holding at least that task's labels,
        endless and beginning at batch `start` (see trainers.trainer). Task T's position is
        its step counter.
      sampler: a TaskSampler over the same task names.
      seed: int; dropout masks are a function of (seed, global step).
      jit_compile: compile each step (forward, backward, update) with XLA.
      clip_norm: clip each step's gradients to this global norm; None for no clipping.
      weight_average: optional mtlcore.averaging.WeightAverage of the model's variables,
        updated after every applied update and swapped in by `evaluation_weights()`.
      max_nonfinite_steps: how many steps with a NaN/Inf loss or gradient may be skipped (their
        update is not applied) before `train` raises NonFiniteError.
      frozen_variables: variables no step changes (no gradient, no optimizer slots).
      loss_scale: a mtlcore.precision.LossScale (fp16), or None.
      name: module name.
    """
    super().__init__(model=model, tasks=tasks, seed=seed, clip_norm=clip_norm,
                     max_nonfinite_steps=max_nonfinite_steps, jit_compile=jit_compile,
                     weight_average=weight_average, frozen_variables=frozen_variables,
                     loss_scale=loss_scale, name=name)
    names = list(self.tasks)
    for what, given in (("an optimizer", optimizers), ("a dataset", datasets)):
      missing = [n for n in names if n not in given]
      extra = [n for n in given if n not in self.tasks]
      if missing or extra:
        raise ConfigError(f"Alternating training needs {what} for each task {names}; "
                          f"missing {missing}, unknown {extra}.")
    if list(sampler.task_names) != names:
      raise ConfigError(f"The sampler's tasks {list(sampler.task_names)} must be the trainer's "
                        f"tasks {names}, in the same order.")
    self.optimizers = dict(optimizers)
    self.sampler = sampler
    # Each distinct optimizer is built once, on every variable of the tasks it serves.
    served = {}
    for n in names:
      optimizer, variables = served.setdefault(id(self.optimizers[n]), (self.optimizers[n], {}))
      variables.update({v.ref(): v for v in self.trained(model.variables_for(n))})
    for optimizer, variables in served.values():
      optimizer.build(variables.values())
    self._set_inputs({n: datasets[n] for n in names}, self.task_steps)
    self._steps = {n: tf.function(functools.partial(self._task_step, n),
                                  jit_compile=jit_compile, autograph=False)
                   for n in names}

  def _task_step(self, name, features, labels):
    """One step of task `name`: returns (log vector, 1 if skipped as non-finite)."""
    variables = self.trained(self.model.variables_for(name))
    with tf.GradientTape() as tape:
      predictions, updates = self._forward(features, [name])
      loss, report = self._task_report(name, labels, predictions, features)
    self._check_reads(tape, f"The step of task '{name}'")
    grads, reached, finite = self._gradients(tape, loss, variables)
    bad = self._apply_if_finite(finite, self.optimizers[name], grads, reached, [name],
                                state_updates=self._state_updates(updates, {name: None}),
                                labelled=report[0]["loss"].count > 0)
    return self.log_layout.step_vector(features, {name: report}), bad

  def _run_task(self, name):
    """One step of task `name` on its next batch: (log vector, 1 if skipped as non-finite);
    under a strategy, each replica on its own batch."""
    features, labels = next(self._inputs.iterators[name])
    if self._replicas.distributed:
      optimizer = self.optimizers[name]
      log, bad, _, _ = self._distributed_step(
          name, [name], self.trained(self.model.variables_for(name)), optimizer, features,
          labels, count_first=False)
      return log, bad
    return self._steps[name](features, labels)

  def _loop_step(self, sums, counts, nonfinite, first_bad, mismatched):
    step = self.global_step.read_value()
    k = self.sampler.sample(step)
    log, bad = tf.switch_case(k, [functools.partial(self._run_task, n) for n in self.tasks])
    return (sums + log, counts + tf.one_hot(k, len(self.tasks)), nonfinite + bad,
            self._note_first_bad(first_bad, bad, k, step), mismatched)

  def step_functions(self):
    if self._replicas.distributed:
      return {f"{n}/{i}": f for n in self.tasks
              for i, f in enumerate(self._replicas.functions(n))}
    return dict(self._steps)

  def optimizer_map(self):
    """{task: its optimizer}, or {"shared": optimizer} when one serves every task."""
    if len({id(o) for o in self.optimizers.values()}) == 1 and len(self.optimizers) > 1:
      return {"shared": next(iter(self.optimizers.values()))}
    return dict(self.optimizers)
