"""docs/examples/keras_images.py, the guide's complete Keras example, runs as it stands: a
Keras CNN trunk and Keras heads learn in alternating and joint mode and the export serves."""

import importlib.util
import pathlib

EXAMPLE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "examples" / "keras_images.py"


def test_the_keras_example_learns_both_tasks_in_both_modes_and_exports(tmp_path, capsys):
  spec = importlib.util.spec_from_file_location("keras_images", EXAMPLE)
  example = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(example)
  results = example.main(str(tmp_path / "export"), steps=200)
  for mode in ("alternate", "joint"):
    assert results[mode]["accuracy"] > 0.9, results  # Two classes: chance is 0.5.
    # Predicting the mean side (7 of 4..10 pixels) errs by 12/7 pixels: 0.107 of the image.
    assert results[mode]["size_mae"] < 0.09, results
  assert "served {'size': [4, 1], 'kind': [4, 2]}" in capsys.readouterr().out.replace(
      "'kind': [4, 2], 'size': [4, 1]", "'size': [4, 1], 'kind': [4, 2]")
