"""Shared test set-up: quiet TensorFlow, XLA programs compiled without LLVM's optimisation
passes (the tests' programs are tiny and compiled once each: optimising them costs more than
running them), one TensorFlow thread per pool (both set before TensorFlow starts, and
inherited by the binaries the tests start), garbage collected between tests, and the path to
the real CoNLL-2000 files.

One thread: the suite runs three pytest workers on this 2-core machine kind, each often with a
binary of its own, and the tests' shapes are tiny. With TensorFlow's default pools (one thread
per core each, per process) they oversubscribe the cores: the five process-contract files
(test_reliability, test_model_dir, test_eval_guards, test_checkpoint_recovery,
test_replicas) took 425.9 s with the default pools and 320.9 s with one thread each, on the
same machine in the same hour (-n 2, one invocation each). A user's run keeps the defaults.

XLA's persistent compilation cache (TF_XLA_FLAGS=--tf_xla_persistent_cache_directory) is
shared by every process of one test session, workers and the binaries they start, and removed
at its end: many tests train the same tiny tagger, and each program is compiled once per
session instead of once per process. The cache holds what XLA would compile again from the
same program under the same flags, so no result depends on it; the test that counts XLA's
compilations (test_compiles) runs its binary without it.
"""

import gc
import os
import shutil
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

XLA_CACHE_FLAG = "--tf_xla_persistent_cache_directory"
# The process that creates the cache (pytest's controller, which the xdist workers and their
# binaries inherit the environment from; or a run without workers) removes it at the end.
_CREATED_XLA_CACHE = None
if XLA_CACHE_FLAG not in os.environ.get("TF_XLA_FLAGS", ""):
  _CREATED_XLA_CACHE = tempfile.mkdtemp(prefix="mtlcore-tests-xla-cache-")
  os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "") +
                                f" {XLA_CACHE_FLAG}={_CREATED_XLA_CACHE}").strip()

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


def pytest_collection_finish(session):
  """Moves what exists once the tests are collected (TensorFlow's modules, the test modules)
  out of the collector's view: each collection below walks only what the tests made."""
  del session
  gc.collect()
  gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage_after_each_test():
  """Collects a test's reference cycles (its trainers, functions, datasets) when it ends.

  Left to Python, a full collection starts whenever allocations pass its threshold, often
  while a later test traces a step; collecting the earlier tests' TensorFlow objects there
  took 18.2 s in one case (measured with gc.callbacks in tests/test_gradient_methods.py),
  and 0.2 s when the same objects are collected between tests. In the full suite, such
  stalls made single tests take 10-15 times their time alone (42.7 s against 3.2 s).
  """
  yield
  gc.collect()


def pytest_sessionfinish(session):
  del session
  if _CREATED_XLA_CACHE:
    shutil.rmtree(_CREATED_XLA_CACHE, ignore_errors=True)


@pytest.fixture
def real_conll_dir():
  """The real CoNLL-2000 directory from MTL_DATA_DIR. Under CI=true a missing copy fails the
  test (CI must never pass by skipping); elsewhere it skips."""
  directory = os.environ.get("MTL_DATA_DIR")
  present = directory and all(os.path.exists(os.path.join(directory, f))
                              for f in ("train.txt.gz", "test.txt.gz"))
  if not present:
    message = f"the real CoNLL-2000 files are not at MTL_DATA_DIR={directory!r}"
    if os.environ.get("CI") == "true":
      pytest.fail(message)
    pytest.skip(message)
  return directory


# The files that take longest start first (pyproject.toml's --no-loadscope-reorder keeps
# this order), so the workers finish together rather than one running them alone at the end:
# the 16 longest by their summed wall time in one suite run (AMD EPYC, 2 cores, -n 3), longest
# first; the rest follow in collection order.
_SLOW_FIRST = ("test_replicas.py", "test_conll_binaries.py", "test_gradient_methods.py",
               "test_tagging_architectures.py", "test_reliability.py", "test_language_model.py",
               "test_replica_weightings.py", "test_model_dir.py", "test_train_toy_binary.py",
               "test_tagging_binaries.py", "test_library_example.py", "test_keras_parts.py",
               "test_trainers.py", "test_tagger.py", "test_weighting.py", "test_precision.py")


def pytest_collection_modifyitems(items):
  rank = {name: i for i, name in enumerate(_SLOW_FIRST)}
  items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # Stable: order kept.
