"""Concrete networks built from mtlcore.layers: the toy regressor and the CoNLL-2000 tagger."""
