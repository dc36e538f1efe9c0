"""Seeds by purpose: every random stream of a job comes from the job's seed and a name.

A method that needs randomness for two things (the order of the training data and the
augmentations, the batches a Hessian is taken on and its probe vectors, ...) must not draw both
from the job seed itself, nor from ad-hoc arithmetic on it (``seed + 1`` of one job is ``seed`` of
the next): the streams would be correlated across purposes and across jobs. ``derive_seed`` hashes
the purpose's name with the seed and the indices through numpy's ``SeedSequence``, so streams of
different purposes, seeds or indices are independent, and the same triple gives the same seed in
every process and every Python (a stable hash, not ``hash()``).
"""

from __future__ import annotations

import hashlib

import numpy as np

from .suite import SEED_MAX


def derive_seed(seed: int, purpose: str, *indices: int) -> int:
    """The seed of ``purpose`` (e.g. ``"mixbin/finetune"``, step 3) for a job of seed ``seed``: in
    [0, SEED_MAX], so it may go wherever a job seed goes (torch, numpy, Optuna, MIP solvers)."""
    if seed < 0 or any(i < 0 for i in indices):
        raise ValueError(f"seeds and indices are non-negative: {seed}, {indices}")
    name = int.from_bytes(hashlib.sha256(purpose.encode()).digest()[:8], "little")
    state = np.random.SeedSequence([seed, name, *indices]).generate_state(1, dtype=np.uint64)
    return int(state[0] % (SEED_MAX + 1))
