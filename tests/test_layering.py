"""The layering: the engine names no task, data set or feature key; every module has one
import name; the library imports nothing from the engine or the benchmarks."""

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
ENGINE = sorted(p for p in (ROOT / "trainers").glob("*.py"))
# Task names, data sets and feature keys of the built-in task sets.
FORBIDDEN = re.compile(r"\b(pos|chunk|conll\w*|toy|y1|y2|words|chars|length|tagger|tagging|"
                       r"vocab\w*|tokens|sentences?)\b", re.IGNORECASE)


def _code_words(path):
  """Identifiers, attribute and argument names, and string literals other than docstrings."""
  tree = ast.parse(path.read_text(), str(path))
  docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef))
                and node.body and isinstance(node.body[0], ast.Expr)
                and isinstance(node.body[0].value, ast.Constant)}
  for node in ast.walk(tree):
    if isinstance(node, ast.Name):
      yield node.lineno, node.id
    elif isinstance(node, ast.Attribute):
      yield node.lineno, node.attr
    elif isinstance(node, ast.arg):
      yield node.lineno, node.arg
    elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
      yield node.lineno, node.name
    elif isinstance(node, ast.alias):
      yield node.lineno, node.name
    elif isinstance(node, ast.Constant) and isinstance(node.value, str):
      if id(node) not in docstrings:
        yield node.lineno, node.value


def test_the_engine_names_no_task_data_set_or_feature_key():
  assert len(ENGINE) >= 10, ENGINE  # trainers, loop, logs, model_dir, config, build, run, ...
  found = [f"{path.name}:{line}: {text!r}" for path in ENGINE
           for line, text in _code_words(path) if FORBIDDEN.search(text)]
  assert not found, found


def test_the_forbidden_words_are_found_where_they_are_used():
  """The check above sees code: the application layer does name them."""
  words = [t for _, t in _code_words(ROOT / "mtlcore" / "task_sets" / "conll2000.py")]
  assert any(FORBIDDEN.search(w) for w in words)


def test_the_library_imports_nothing_from_the_engine_or_the_benchmarks():
  offenders = [str(p) for p in (ROOT / "mtlcore").rglob("*.py")
               if re.search(r"^\s*(from|import)\s+(mtlcore\.)?(trainers|benchmarks)\b",
                            p.read_text(), re.M)]
  assert not offenders, offenders


def _python(code):
  return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                        timeout=300, check=False)


def test_each_module_has_one_import_name_and_all_binaries_import_together():
  for folder in ("trainers", "benchmarks"):
    second = _python(f"import {folder}")
    assert second.returncode != 0
    assert f"This folder is the package mtlcore.{folder}" in second.stderr, second.stderr
  together = _python(
      "import mtlcore.trainers.cli.train, mtlcore.trainers.cli.eval, mtlcore.trainers.cli.tag\n"
      "import mtlcore.benchmarks.throughput, mtlcore.benchmarks.compiles\n"
      "import mtlcore.benchmarks.quality, mtlcore.benchmarks.sharing\n"
      "import sys\n"
      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trainers', 'benchmarks')))")
  assert together.returncode == 0, together.stderr
  assert together.stdout.strip() == "[]"
