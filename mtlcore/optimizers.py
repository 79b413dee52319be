"""Adam, written as math first: a pure update function and a thin module holding its state.

The state (slots, step counter, learning rate) is created eagerly by `build`, before any
step is traced, so no variable is ever created inside a compiled step and a checkpoint of
the module holds everything that decides its future updates.
"""

import tensorflow as tf

from mtlcore.errors import ConfigError


def adam_step_size(*, alpha, beta_1, beta_2, t):
  """The bias-corrected step size of Adam's step `t` (float scalar, counting from 1):
  alpha * sqrt(1 - beta_2^t) / (1 - beta_1^t). One per step, shared by every variable."""
  return alpha * tf.sqrt(1.0 - beta_2**t) / (1.0 - beta_1**t)


def adam_moments_update(g, *, step_size, beta_1, beta_2, epsilon, m, v):
  """Adam's update of one variable given the step's `adam_step_size`.

  Args:
    g: gradient, same shape as the variable.
    step_size: the step's bias-corrected step size (scalar).
    beta_1, beta_2: decay rates of the first and second moment estimates (scalars).
    epsilon: added to the denominator.
    m, v: first and second moment estimates before this step.
  Returns:
    (delta, m, v): the change to add to the variable and the new moment estimates.
  """
  m = beta_1 * m + (1.0 - beta_1) * g  # Biased first moment.
  v = beta_2 * v + (1.0 - beta_2) * tf.square(g)  # Biased second raw moment.
  delta = -step_size * m / (tf.sqrt(v) + epsilon)
  return delta, m, v


def adam_update(g, *, alpha, beta_1, beta_2, epsilon, t, m, v):
  """One Adam step for one variable (Kingma & Ba 2015, the "epsilon hat" form Keras uses).

  Args:
    g: gradient, same shape as the variable.
    alpha: learning rate (scalar).
    beta_1, beta_2: decay rates of the first and second moment estimates.
    epsilon: added to the denominator.
    t: the step number counting from 1 (float scalar).
    m, v: first and second moment estimates before this step.
  Returns:
    (delta, m, v): the change to add to the variable and the new moment estimates.
  """
  return adam_moments_update(
      g, step_size=adam_step_size(alpha=alpha, beta_1=beta_1, beta_2=beta_2, t=t),
      beta_1=beta_1, beta_2=beta_2, epsilon=epsilon, m=m, v=v)


class Adam(tf.Module):
  """Adam over a fixed list of variables given once to `build`.

  `apply(grads, variables)` adds one update to each variable and increments `iterations`.
  `learning_rate` is the base rate, a variable; an optional `schedule` (a function of the
  update count, e.g. mtlcore.schedules.LinearDecay) multiplies it, and
  `current_learning_rate()` gives the rate the next update will use.
  """

  def __init__(self, learning_rate=1e-3, *, beta_1=0.9, beta_2=0.999, epsilon=1e-7,
               schedule=None, name=None):
    super().__init__(name=name)
    self.schedule = schedule
    if not learning_rate > 0:
      raise ConfigError(f"{self.name} learning_rate must be positive, got {learning_rate!r}.")
    self.learning_rate = tf.Variable(float(learning_rate), trainable=False, name="learning_rate")
    self.beta_1, self.beta_2, self.epsilon = float(beta_1), float(beta_2), float(epsilon)
    self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
    self.m = None
    self.v = None
    self._index = None

  @property
  def built(self):
    return self._index is not None

  def build(self, variables):
    """Creates one pair of moment slots per variable. Call once, eagerly, before training."""
    if self.built:
      raise ConfigError(f"{self.name} is already built; use one optimizer per variable set.")
    variables = list(variables)
    self._index = {v.ref(): i for i, v in enumerate(variables)}
    if len(self._index) != len(variables):
      raise ConfigError(f"{self.name} was given the same variable twice.")
    self.m = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"m/{i}")
              for i, v in enumerate(variables)]
    self.v = [tf.Variable(tf.zeros_like(v), trainable=False, name=f"v/{i}")
              for i, v in enumerate(variables)]

  def current_learning_rate(self):
    """The learning rate (float32 scalar) of the next update: base x schedule(iterations)."""
    base = tf.identity(self.learning_rate)
    if self.schedule is None:
      return base
    return base * self.schedule(self.iterations.read_value())

  def apply(self, grads, variables, active=None):
    """Applies `grads` (tensors or IndexedSlices) to `variables`, all of which it was built on.

    `active` (optional): per variable, None (always), a bool scalar, or a bool vector [N]
    over the variable's first axis (its rows, for a variable of shape [N, ...]); where
    False, that variable (or row) and its moments stay bitwise unchanged (e.g. a head whose
    task had no label in the batch). The update count advances once per call either way.
    """
    if not self.built:
      raise ConfigError(f"{self.name} must be built on its variables before apply().")
    alpha = self.current_learning_rate()
    self.iterations.assign_add(1)
    t = tf.cast(self.iterations, tf.float32)
    # The step size once, shared by every variable's update: the traced step holds one copy
    # of its ops instead of one per variable (the same value, so the same updates).
    step_size = adam_step_size(alpha=alpha, beta_1=self.beta_1, beta_2=self.beta_2, t=t)
    active = [None] * len(variables) if active is None else list(active)
    for g, var, on in zip(grads, variables, active):
      i = self._index.get(var.ref())
      if i is None:
        raise ConfigError(f"{self.name} was not built on variable {var.name}.")
      delta, m, v = adam_moments_update(
          tf.convert_to_tensor(g), step_size=step_size, beta_1=self.beta_1,
          beta_2=self.beta_2, epsilon=self.epsilon, m=self.m[i], v=self.v[i])
      if on is None:
        self.m[i].assign(m)
        self.v[i].assign(v)
        var.assign_add(delta)
      else:
        if on.shape.rank:  # Per row: broadcast over the variable's other axes.
          on = tf.reshape(on, [-1] + [1] * (var.shape.rank - 1))
        self.m[i].assign(tf.where(on, m, self.m[i]))
        self.v[i].assign(tf.where(on, v, self.v[i]))
        var.assign(tf.where(on, var + delta, var))
