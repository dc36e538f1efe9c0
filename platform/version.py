"""binarena's installed version, as recorded with every result and shown by ``--version``."""

from __future__ import annotations

import functools
from importlib.metadata import PackageNotFoundError, version


@functools.cache
def binarena_version() -> str:
    try:
        return version("binarena")
    except PackageNotFoundError:
        return "unknown"
