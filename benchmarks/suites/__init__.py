"""Suites bundled with binarena (``binarena suites`` lists them)."""
