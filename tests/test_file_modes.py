"""Files written atomically (results.parquet, weights, checkpoints) get the mode every other file
of the results folder gets from the umask, not mkstemp's owner-only 0600."""

from __future__ import annotations

import os
import stat

import pytest

from binarena.results import atomic_write, umask


@pytest.fixture(params=[0o022, 0o027, 0o002])
def mask(request):
    before = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(before)


def test_umask_is_read_without_changing_it(mask):
    assert umask() == mask
    assert umask() == mask


def test_an_atomic_write_has_the_mode_of_a_plain_write(tmp_path, mask):
    plain = tmp_path / "leaderboard.csv"
    plain.write_text("a,b\n")  # as the leaderboard files are written
    atomic = tmp_path / "results.parquet"
    atomic_write(atomic, b"x")
    atomic_write(atomic, b"y")  # a replacement keeps it
    mode = stat.S_IMODE(atomic.stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~mask
    assert atomic.read_bytes() == b"y" and sorted(p.name for p in tmp_path.iterdir()) == [
        "leaderboard.csv", "results.parquet"]
