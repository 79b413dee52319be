"""Studies: CoNLL-2000 experiments that train many `mtl-train` runs and write their tables into
benchmarks/RESULTS.md. Run from a checkout (`pip install -e .`), e.g.
`python3 -m mtlcore.benchmarks.studies.quality --help`; they are not part of the wheel."""
