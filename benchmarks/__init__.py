"""Datasets, model architectures, bundled suites and benchmark scripts."""
