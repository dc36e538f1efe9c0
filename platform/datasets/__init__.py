"""The data sets a suite can name, one module per family, each registered by name in
``binarena.registry.DATASETS`` and imported when a suite names one of them.

Every loader returns ``DataSplits`` (train / validation / test as torch datasets). Validation is
carved out of the official training set and subsets are drawn with the suite's ``dataset.seed``, so
every job of a suite sees the same images. Nothing is downloaded unless the suite allows it.

``check`` runs on the driver before anything is written: files that are there but corrupt,
truncated, inconsistent or labelled out of range are refused there (``DataError`` naming the
file), not met later as a job failure with Python's own error. ``fingerprint`` is a short digest
of the content that determines results, for job keys.
"""

from .base import DatasetSource, DataSplits

__all__ = ["DatasetSource", "DataSplits"]
