"""Model architectures, registered by name. Each factory takes
``(input_shape, num_classes, activation, **options)`` and returns a plain ``nn.Module``; the
platform makes its conv / linear layers switchable between full precision and binary."""

from . import (  # noqa: F401  (registering is what importing does)
    mobilenet,  # mobilenetv1
    resnet,  # cresnet20, resnet18
    small,  # mlp, cnn
)
