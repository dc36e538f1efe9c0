"""Shared fixtures: one real local Ray per test session, suite files, and the data root.

Tests that need MNIST / Fashion-MNIST read them from ``$BINARENA_DATA``; without it they skip,
unless ``BINARENA_REQUIRE_DATA=1`` (set by CI) turns the skip into a failure.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
# How long a test waits for a run (or a process) before calling it hung: a guard against hangs,
# never a speed target, so generous that a correct run on a loaded 2-core machine (the quickstart
# once took 10 min) stays green. How fast things are is measured in benchmarks/, not asserted.
HANG_S = 1200

TINY_SUITE: dict[str, Any] = {
    "name": "tiny",
    "description": "a reduced quickstart for tests",
    "dataset": {"name": "digits", "train_size": 300, "val_size": 50, "test_size": 200},
    "model": {"name": "cnn", "options": {"channels": [4, 8], "blocks_per_stage": 1}},
    "methods": [{"name": "full-precision"}, {"name": "full-binary"}, {"name": "random"}],
    "budgets": [50],
    "seeds": [0, 1],
    "training": {"epochs": 2, "batch_size": 64, "lr": 0.05},
}


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    from binarena.connect import ensure_ray

    ensure_ray(None, num_cpus=2)  # as the CLI starts it: loopback only, token file owner-only
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def ray_address(ray_cluster) -> str:
    """The session cluster's address, for a CLI run in a subprocess (``--address``): joining it
    costs none of the seconds a new local Ray takes to start, and drives the path a cluster
    user takes. Tests about starting Ray itself run the CLI without it."""
    return ray_cluster.get_runtime_context().gcs_address


@pytest.fixture
def write_suite(tmp_path: Path) -> Callable[..., Path]:
    """Write a suite YAML (the tiny suite, with top-level keys replaced) and return its path."""

    def write(name: str = "tiny", **changes: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**TINY_SUITE, "name": name, **changes}))
        return path

    return write


@pytest.fixture
def data_root() -> Path:
    root = os.environ.get("BINARENA_DATA")
    found = root and all((Path(root) / d).is_dir() for d in ("mnist", "fashion-mnist"))
    if not found:
        reason = (f"MNIST / Fashion-MNIST not found: set BINARENA_DATA to a folder holding mnist/ and "
                  f"fashion-mnist/ with the IDX files (BINARENA_DATA={root!r})")
        if os.environ.get("BINARENA_REQUIRE_DATA") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return Path(root)


@pytest.fixture(scope="module")
def one_thread():
    """Torch on one thread for a module: tensors this small compute fastest so on a loaded
    machine (two threads can take many times as long)."""
    import torch  # here: collecting tests imports no torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
