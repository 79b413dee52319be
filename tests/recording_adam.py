"""RecordingAdam: mtlcore's Adam that keeps the gradients of its first update, per variable
(a test reads what a compiled step applied). Its own module so that a pytest worker can import
it without tests/replica_check.py, which splits the CPU when imported."""

import tensorflow as tf

from mtlcore.optimizers import Adam


class RecordingAdam(Adam):
  """Adam that also keeps the gradients of its first update, per variable (`first`, in the
  order of `build`'s variables; `first_of(variable)` as numpy)."""

  def build(self, variables):
    variables = list(variables)
    super().build(variables)
    self.first = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

  def apply(self, grads, variables, active=None):
    grads = [tf.convert_to_tensor(g) for g in grads]
    for g, v in zip(grads, variables):
      slot = self.first[self._index[v.ref()]]
      slot.assign(tf.where(self.iterations == 0, g, slot))
    super().apply(grads, variables, active)

  def first_of(self, variable):
    return self.first[self._index[variable.ref()]].numpy()
