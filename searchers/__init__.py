"""Methods, registered by name for suites (``binarena.registry.METHODS``)."""

from binarena.searchers import baselines, bemi, mixbin  # noqa: F401  (registers the methods)
