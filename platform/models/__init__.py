"""Model architectures, registered by name. Each factory takes
``(input_shape, num_classes, activation, **options)`` and returns a plain ``nn.Module``; the
platform makes its conv / linear layers switchable between full precision and binary. Each module
is imported when a suite names one of its models (``binarena.registry.MODELS``)."""
