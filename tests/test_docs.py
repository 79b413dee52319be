"""The generated references stay true to the code (docs/generate.py rewrites them), and
README stays a five-minute read."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _generator():
  spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def test_the_command_reference_is_what_the_binaries_help_prints():
  stale = (ROOT / "docs" / "commands.md").read_text(encoding="utf-8") != _generator().commands()
  assert not stale, "docs/commands.md is stale: run python3 docs/generate.py"


def test_the_api_reference_is_what_the_docstrings_say():
  stale = (ROOT / "docs" / "api.md").read_text(encoding="utf-8") != _generator().api()
  assert not stale, "docs/api.md is stale: run python3 docs/generate.py"


def test_readme_is_at_most_15000_characters_and_links_the_docs():
  readme = (ROOT / "README.md").read_text(encoding="utf-8")
  assert len(readme) <= 15000, len(readme)
  for target in ("docs/guide.md", "docs/commands.md", "docs/api.md", "docs/guarantees.md",
                 "benchmarks/RESULTS.md"):
    assert f"]({target}" in readme, target
    assert (ROOT / target).exists(), target


def test_every_test_the_guarantees_name_exists():
  import re  # pylint: disable=g-import-not-at-top
  named = set(re.findall(r"`(test_\w+)`", (ROOT / "docs" / "guarantees.md").read_text()))
  defined = {m for p in (ROOT / "tests").glob("test_*.py")
             for m in re.findall(r"^def (test_\w+)", p.read_text(), re.M)}
  assert named and not named - defined, sorted(named - defined)
