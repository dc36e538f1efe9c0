"""Methods, registered by name for suites (``binarena.registry.METHODS``)."""

from binarena.searchers import baselines, bemi, mixbin, optuna_mask  # noqa: F401  (registers the methods)
