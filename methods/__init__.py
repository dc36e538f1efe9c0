"""The built-in methods, each registered by name for suites (``binarena.registry.METHODS``) when
its module is first looked up; ``binarena.methods.base`` is the interface they implement."""
