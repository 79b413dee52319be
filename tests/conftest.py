"""Shared test set-up: quiet TensorFlow, XLA programs compiled without LLVM's optimisation
passes (the tests' programs are tiny and compiled once each: optimising them costs more than
running them; set before TensorFlow starts, and inherited by the binaries the tests start),
and the path to the real CoNLL-2000 files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                             " --xla_backend_optimization_level=0").strip()

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position


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
