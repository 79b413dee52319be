"""The synthetic task set: K regression tasks of controlled correlation (Ma et al. 2018).

Reached through its entry point `synthetic` (mtlcore.synthetic.options); nothing in the core
imports it.
"""
