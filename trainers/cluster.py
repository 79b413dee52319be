"""The cluster TF_CONFIG names and this process' role in it, read without TensorFlow.

mtl-train checks TF_CONFIG with the other flags, before TensorFlow starts
(trainers.cli.flags); trainers.workers builds the multi-worker strategy on it.
"""

import dataclasses
import json
import os

from mtlcore.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Role:
  """This process' place in the cluster."""
  task_type: str = "worker"
  index: int = 0
  chief: bool = True

  @property
  def name(self):
    return f"{self.task_type}:{self.index}"


def cluster_role():
  """The Role TF_CONFIG gives this process (ConfigError naming what is wrong with it)."""
  text = os.environ.get("TF_CONFIG")
  if not text:
    raise ConfigError("--strategy=multi_worker needs TF_CONFIG: the cluster's addresses and "
                      "this process' task (see BUILD.md, 'Several machines').")
  try:
    spec = json.loads(text)
    cluster, task = spec["cluster"], spec["task"]
    task_type, index = task["type"], int(task["index"])
    workers = list(cluster.get("worker", []))
    chiefs = list(cluster.get("chief", []))
    address = (chiefs if task_type == "chief" else workers)[index]
  except (ValueError, KeyError, TypeError, IndexError) as e:
    raise ConfigError(f"TF_CONFIG is not a cluster spec with this process' task in it "
                      f"({type(e).__name__}: {e}); see BUILD.md, 'Several machines'.") from None
  if task_type not in ("chief", "worker") or not address:
    raise ConfigError(f"TF_CONFIG: task type must be chief or worker, got {task_type!r}.")
  chief = task_type == "chief" or (not chiefs and index == 0)
  return Role(task_type, index, chief)
