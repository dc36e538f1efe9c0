"""Baselines: the references (full precision, fully binary) and layer-selection baselines, one
module each, imported when a suite names them (``binarena.registry.METHODS``)."""
