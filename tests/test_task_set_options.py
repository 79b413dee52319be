"""A task set declares its options (mtlcore.options): the binaries make flags of them, list
them under --helpshort and check them before TensorFlow starts; installed task sets are found
through the `mtlcore.task_sets` entry points."""

import json
import subprocess
import sys
import textwrap

import pytest

from mtlcore import options as options_lib
from mtlcore import task_set
from mtlcore.tagging import options as tagging_options
from tests.binaries import TRAIN, error_line, run_in_process


def test_installed_task_sets_are_declared_without_importing_tensorflow():
  code = ("import sys\nfrom mtlcore import task_set\n"
          "print(task_set.installed_names(), task_set.default_name())\n"
          "print([o.name for o in task_set.declaration('toy').options])\n"
          "print('tensorflow' in sys.modules)")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)
  assert result.returncode == 0, result.stderr
  assert result.stdout.split("\n")[:3] == [
      "['conll2000', 'synthetic', 'tagging', 'toy'] conll2000",
      "['hidden_size', 'num_examples', 'network']", "False"]


def _tagging_defaults(task_set_instance):
  values = task_set_instance.options()
  values["reads"] = [f"{t}:{layer}" for t, layer in values["reads"].items()]
  return values


@pytest.mark.parametrize("name, declaration, given", [
    ("tagging", tagging_options.TAGGING, {"columns": ["word", "pos", "chunk"], "train": "x"}),
    ("conll2000", tagging_options.CONLL2000, {}),
])
def test_the_declared_defaults_are_the_ones_the_task_set_uses(name, declaration, given):
  in_force = _tagging_defaults(task_set.resolve(name, given))
  declared = declaration.option_defaults()
  if not in_force["lm_vocab"]:  # Without the LM task its other options are not in force.
    declared = {k: v for k, v in declared.items() if k not in ("lm_projection", "lm_weight")}
  assert declared and {k: in_force[k] for k in declared} == {
      k: list(v) if isinstance(v, tuple) else v for k, v in declared.items()}
  assert task_set.resolve(name, given).defaults == declaration.run_defaults


def _plugin(tmp_path, monkeypatch, module, schema):
  """A factory with an option_schema, importable as module:make."""
  (tmp_path / f"{module}.py").write_text(textwrap.dedent(f"""\
      from mtlcore.options import Option
      from mtlcore.toy.task_set import ToyTaskSet

      def make(options):
        return ToyTaskSet({{"hidden_size": options.get("width", 8)}})

      make.option_schema = ({schema},)
      """))
  monkeypatch.syspath_prepend(str(tmp_path))
  return f"{module}:make"


def test_a_plugins_option_schema_is_read_after_importing_it(tmp_path, monkeypatch):
  name = _plugin(tmp_path, monkeypatch, "width_plugin",
                 'Option("width", "integer", 8, "Hidden units.")')
  shown = run_in_process(TRAIN, f"--task_set={name}", "--helpshort")
  assert shown.returncode == 0, shown.stderr
  assert "  --width (default: 8)" in shown.stdout
  assert "read by importing width_plugin" in shown.stdout
  bad = run_in_process(TRAIN, f"--task_set={name}", "--width=wide", f"--model_dir={tmp_path}/m")
  assert "flag --width=wide: invalid literal" in error_line(bad)
  run = run_in_process(TRAIN, f"--task_set={name}", "--width=3", "--train_steps=2",
                       f"--model_dir={tmp_path / 'run'}")
  assert run.returncode == 0, run.stderr[-3000:]
  config = json.loads((tmp_path / "run" / "config.json").read_text())
  assert config["options"]["hidden_size"] == 3  # The plugin passed --width on.


def test_an_option_named_like_a_run_flag_is_refused(tmp_path, monkeypatch):
  name = _plugin(tmp_path, monkeypatch, "clash_plugin",
                 'Option("batch_size", "integer", 8, "Clash.")')
  result = run_in_process(TRAIN, f"--task_set={name}", f"--model_dir={tmp_path}/m")
  assert "declares the option 'batch_size', which is a flag" in error_line(result)


def test_an_option_is_declared_with_a_known_kind_and_choices_only_for_an_enum():
  with pytest.raises(ValueError, match="kind must be one of"):
    options_lib.Option("width", "number")
  with pytest.raises(ValueError, match="only an enum, has choices"):
    options_lib.Option("trunk", "enum")
  with pytest.raises(ValueError, match="declared twice"):
    options_lib.Declaration("m:f", options=(options_lib.Option("a", "integer"),) * 2)
