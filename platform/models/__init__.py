"""Model architectures, registered by name. Each factory takes
``(input_shape, num_classes, activation, **options)`` and returns a plain ``nn.Module``; the
platform makes its conv / linear layers switchable between full precision and binary. The
factories are declared in ``catalog`` (no torch: reading a suite imports none); each imports its
architecture's module when it builds one."""
