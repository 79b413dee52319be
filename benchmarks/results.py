"""benchmarks/RESULTS.md is written by the benchmarks themselves, one section each.

A section lies between `<!-- begin NAME -->` and `<!-- end NAME -->`; writing it replaces
only that section, so each script regenerates its own table and leaves the others alone.
"""

import os
import re

RESULTS_MD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def replace_section(name, text, path=RESULTS_MD):
  begin, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
  block = f"{begin}\n{text.rstrip()}\n{end}"
  old = open(path, encoding="utf-8").read() if os.path.exists(path) else "# Benchmark results\n"
  pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
  new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + f"\n\n{block}\n"
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.write(new)
  os.replace(tmp, path)


def replace_section_with_figure(name, text, svg, caption):
  """replace_section(name, text), the SVG string `svg` written beside RESULTS.md as
  NAME.svg and shown below the text with `caption` as its alternative text."""
  with open(os.path.join(os.path.dirname(RESULTS_MD), f"{name}.svg"), "w",
            encoding="utf-8") as f:
    f.write(svg)
  replace_section(name, text + f"\n\n![{caption}]({name}.svg)")
