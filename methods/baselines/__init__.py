"""Baselines: the references (full precision, fully binary) and layer-selection baselines."""

from binarena.methods.baselines import adaptive_mbq, bnas, hawq, positional, random_selection, reference, slimming  # noqa: F401
