"""The layering: the core (the library outside its applications, the engine and the binaries)
names no application's task, data set, tag scheme or feature key and never imports an
application; every module has one import name; the library imports nothing from the engine or
the benchmarks."""

import ast
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
APPLICATIONS = ("synthetic", "tagging", "toy")  # mtlcore/NAME/: reached by entry points.
CORE = sorted([*(p for p in (ROOT / "mtlcore").rglob("*.py")
                 if p.relative_to(ROOT / "mtlcore").parts[0] not in APPLICATIONS),
               *(ROOT / "trainers").rglob("*.py")])
# In code (identifiers, attributes, arguments, strings): the built-in task sets' task names,
# data sets, feature keys and pieces. Words of sequences in general (tokens, lengths,
# sentences, an embedding's vocab_size) are the core's to use.
FORBIDDEN_IN_CODE = re.compile(r"\b(pos|chunk\w*|conll\w*|toy|y1|y2|words|chars|tagger|"
                               r"tagging|crf|conlleval|lm)\b", re.IGNORECASE)
# Anywhere, docstrings and comments included.
FORBIDDEN_IN_TEXT = re.compile(r"\b(pos|chunk\w*|conll\w*|toy|tagger|tagging|crf|conlleval|"
                               r"bioe?s?|iob\d?)\b", re.IGNORECASE)


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


def test_the_core_covers_the_library_the_engine_and_the_binaries():
  names = {str(p.relative_to(ROOT)) for p in CORE}
  assert {"mtlcore/model.py", "mtlcore/task_set.py", "mtlcore/layers/linear.py",
          "trainers/run.py", "trainers/cli/flags.py", "trainers/cli/eval.py",
          "trainers/cli/tag.py"} <= names
  assert not any("/tagging/" in n or "/toy/" in n for n in names)


def test_the_core_names_no_application_in_code():
  found = [f"{path.relative_to(ROOT)}:{line}: {text!r}" for path in CORE
           for line, text in _code_words(path) if FORBIDDEN_IN_CODE.search(text)]
  assert not found, found


def test_the_core_names_no_application_in_its_docstrings_and_comments():
  found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}" for path in CORE
           for number, line in enumerate(path.read_text().splitlines(), 1)
           if FORBIDDEN_IN_TEXT.search(line)]
  assert not found, found


def test_the_forbidden_words_are_found_where_they_are_used():
  """The checks above see code and text: the application does name them."""
  path = ROOT / "mtlcore" / "tagging" / "conll2000_task_set.py"
  assert any(FORBIDDEN_IN_CODE.search(w) for _, w in _code_words(path))
  assert FORBIDDEN_IN_TEXT.search(path.read_text())


def _imports(path):
  tree = ast.parse(path.read_text(), str(path))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      yield from (a.name for a in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      yield node.module
      yield from (f"{node.module}.{a.name}" for a in node.names)


def test_the_core_never_imports_an_application():
  offenders = [f"{path.relative_to(ROOT)}: {name}" for path in CORE for name in _imports(path)
               if re.match(rf"mtlcore\.({'|'.join(APPLICATIONS)})\b", name)]
  assert not offenders, offenders


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
      "import mtlcore.benchmarks.studies.quality, mtlcore.benchmarks.studies.sharing\n"
      "import sys\n"
      "print(sorted(m for m in sys.modules if m.split('.')[0] in ('trainers', 'benchmarks')))")
  assert together.returncode == 0, together.stderr
  assert together.stdout.strip() == "[]"
