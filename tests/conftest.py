"""Shared test set-up: quiet TensorFlow, and the path to the real CoNLL-2000 files."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
