"""The built-in task sets: toy (the tutorial) and conll2000 (POS tagging and chunking)."""
