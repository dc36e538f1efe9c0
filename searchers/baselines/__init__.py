"""Baselines: the references (full precision, fully binary) and layer-selection baselines."""

from binarena.searchers.baselines import positional, random_selection, reference  # noqa: F401
