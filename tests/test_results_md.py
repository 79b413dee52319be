"""benchmarks/RESULTS.md's generated sections (benchmarks/results.py): each lies between
its own markers and holds only its own heading."""

import re

from mtlcore.benchmarks import results


def test_each_generated_section_of_results_md_holds_only_its_own_heading():
  """A study rewrites everything between its section's markers: a hand-written section that
  came to stand inside another's markers would be lost at the next run (it happened: the
  keras_parity marker once stood above three hand-written sections)."""
  text = open(results.RESULTS_MD, encoding="utf-8").read()
  sections = re.findall(r"<!-- begin (\S+) -->(.*?)<!-- end \1 -->", text, re.S)
  assert len(sections) == text.count("<!-- begin ")
  for name, body in sections:
    headings = [line for line in body.splitlines() if line.startswith("## ")]
    assert len(headings) == 1, (name, headings)
