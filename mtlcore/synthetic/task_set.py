"""SyntheticTaskSet: mtlcore.synthetic.data's K regression tasks, in memory.

Every task is labelled on every example (one joint corpus; each task's alternating stream is
that corpus shuffled with its own seed). Held-out splits dev and test, scored by the engine
(loss, mae, rmse per task). The network: one shared ReLU layer (`--architecture=hard`), a
mixture of experts with a gate per task (`mmoe`, mtlcore.mixture_of_experts) or one gate for
all (`moe`), shared and task
experts in extraction levels (`cgc`, `ple`, mtlcore.progressive_layered_extraction), a column
per task joined by cross-stitch units (`cross_stitch`, mtlcore.cross_stitch), a shared
network with task attention masks (`mtan`, mtlcore.task_attention) or shared experts under a
DSelect-k gate per task (`dselect_k`, mtlcore.dselect_k), and a linear head per task reading
its own representation.
"""

import dataclasses

from mtlcore import in_memory
from mtlcore.architectures import MixtureSizes, task_mixture
from mtlcore.errors import ConfigError, require_positive
from mtlcore.model import MultiTaskModel
from mtlcore.options import reject_unknown
from mtlcore.relu_trunk import ReluTrunk
from mtlcore.synthetic import data as synthetic_data
from mtlcore.synthetic.options import SYNTHETIC
from mtlcore.task_kinds import Regression

HELD_OUT = 2048  # Examples of dev and of test.


class SyntheticTaskSet(in_memory.InMemoryTaskSet):
  """Options: mtlcore.synthetic.options."""

  option_schema = SYNTHETIC.options
  defaults = SYNTHETIC.run_defaults
  splits = ("dev", "test")

  def __init__(self, options=None):
    reject_unknown("synthetic", options or {}, self.option_schema)
    options = {**SYNTHETIC.option_defaults(), **(options or {})}
    for name in ("num_tasks", "input_dim", "num_examples"):
      require_positive(name, options[name])
    if options["sinusoids"] < 0:
      raise ConfigError(f"--sinusoids must be >= 0, got {options['sinusoids']}.")
    try:
      self.sizes = MixtureSizes(**{f.name: options[f.name]
                                   for f in dataclasses.fields(MixtureSizes)})
      self.sizes.check(options["architecture"])
    except ConfigError as e:
      raise ConfigError(f"--{e}") from None
    self._options = options
    try:
      self.weights = synthetic_data.weight_vectors(
          options["num_tasks"], float(options["correlation"]), options["input_dim"],
          seed=options["data_seed"])
    except ValueError as e:
      raise ConfigError(f"--{e}") from None
    self.kinds = {f"t{k}": Regression() for k in range(options["num_tasks"])}
    self.task_names = tuple(self.kinds)

  def options(self):
    return dict(self._options)

  def trunk(self, seed, tasks=None):
    options = self._options
    if options["architecture"] == "hard":
      return ReluTrunk(options["input_dim"], options["hidden_size"], seed=seed, name="trunk")
    # The parts of the trained tasks only (their gates, experts, columns or masks).
    return task_mixture(options["architecture"], options["input_dim"],
                        tuple(tasks or self.task_names), self.sizes, seed=seed, name="trunk")

  def build_model(self, tasks, *, seed, assets_dir, data=None):
    if self._options["architecture"] == "hard":
      return super().build_model(tasks, seed=seed, assets_dir=assets_dir, data=data)
    trunk = self.trunk(seed, tasks)
    heads = {t: self.kinds[t].head(reads=t, input_size=trunk.output_sizes[t],
                                   seed=seed + 1000 * (i + 1), name=f"{t}_head")
             for i, t in enumerate(tasks)}
    return MultiTaskModel(trunk, heads, name="synthetic")

  def arrays(self, data_dir):
    del data_dir  # Generated.
    alpha, beta = synthetic_data.sinusoids(self._options["sinusoids"],
                                           seed=self._options["data_seed"])
    out = {}
    for index, (split, size) in enumerate((("train", self._options["num_examples"]),
                                           ("dev", HELD_OUT), ("test", HELD_OUT))):
      x, y = synthetic_data.make_split(size, self.weights, alpha, beta,
                                       seed=self._options["data_seed"], split=index)
      out[split] = ({"x": x}, {t: y[:, k] for k, t in enumerate(self.task_names)})
    return out
