"""The flat results table of a suite: one row per stage key, in ``<results>/<suite>/results.parquet``
(a ``JobOutcome``'s row, ``binarena.outcome``).

It is the driver's record of what is done (resume reads it) and what the leaderboard is built
from: a row per job, and a row (``kind: pretrain``) per shared pre-training the jobs start from.
Every write replaces the file atomically, so an interrupted run never leaves it half-written.
"""

from __future__ import annotations

import io
import json
import logging
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import UserError, first_line
from .outcome import ROW_SCHEMA

log = logging.getLogger(__name__)

PARTIAL = ".partial-"  # in the name of a file being written (see atomic_write)


@dataclass
class ResultsTable:
    path: Path
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def open(cls, path: Path) -> ResultsTable:
        """The table at ``path`` (empty if there is none); a file that is not a readable results
        table is a ``UserError``: it is never overwritten, since it may hold results."""
        table = cls(path)
        if not path.is_file():
            return table
        try:
            rows = python_rows(pq.ParquetFile(path).read())  # (read_table: 0.5 s more imports)
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path}: not a readable results table ({first_line(exc)}); move it "
                            "away (a run then starts a new one)") from None
        if rows and not {"key", "status"} <= set(rows[0]):
            raise UserError(f"{path}: a Parquet file that is not a binarena results table (no key "
                            "or status column); move it away (a run then starts a new one)")
        for row in rows:
            row.setdefault("kind", "job")  # tables written before pre-training stages
            table.rows[row["key"]] = row
        return table

    def done_keys(self) -> set[str]:
        return {key for key, row in self.rows.items() if row["status"] == "ok"}

    def record(self, *rows: dict[str, Any]) -> None:
        """Add or replace the rows (by ``row["key"]``) and rewrite the file atomically, once."""
        for row in rows:
            missing = set(ROW_SCHEMA.names) - set(row)
            if missing:
                raise ValueError(f"results row lacks {sorted(missing)}")
            self.rows[row["key"]] = row
        self._write()

    def _write(self) -> None:
        buffer = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(list(self.rows.values()), schema=ROW_SCHEMA), buffer)
        atomic_write(self.path, buffer.getvalue())

    def to_pylist(self) -> list[dict[str, Any]]:
        return list(self.rows.values())


def python_rows(table: pa.Table) -> list[dict[str, Any]]:
    """The table's rows as Python values. Timestamps are converted here: pyarrow imports pandas
    (0.3-0.5 s, the most of a leaderboard's answer) to convert a zoned one."""
    stamps = {f.name: f.type for f in table.schema if pa.types.is_timestamp(f.type)}
    for name in stamps:
        table = table.set_column(table.schema.get_field_index(name), name,
                                 table[name].cast(pa.int64()))
    rows = table.to_pylist()
    for name, kind in stamps.items():
        zone = timezone.utc if kind.tz in ("UTC", "+00:00") else ZoneInfo(kind.tz) if kind.tz else None
        per_unit = {"s": 1_000_000, "ms": 1_000, "us": 1, "ns": 1}[kind.unit]
        for row in rows:
            if row[name] is not None:
                ticks = row[name] // 1000 if kind.unit == "ns" else row[name]
                moment = EPOCH + timedelta(microseconds=ticks * per_unit)
                row[name] = moment.astimezone(zone) if zone else moment.replace(tzinfo=None)
    return rows


EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def recorded_in_folder(results: Path, keys: Iterable[str], suite: str) -> dict[str, dict[str, Any]]:
    """Successful rows that other suites of the same results folder recorded for these keys.

    A key names only what determines a result, never the suite, so a row any suite recorded for a
    key is that key's result. The rows keep the name of the suite that ran them.
    """
    wanted = set(keys)
    found: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob("*/results.parquet")):
        if path.parent.name == suite or len(found) == len(wanted):
            continue
        try:
            other = ResultsTable.open(path)
        except UserError as exc:  # another suite's problem: it must not block this one
            log.warning("%s; its rows are not reused", exc)
            continue
        for key, row in other.rows.items():
            if key in wanted and key not in found and row["status"] == "ok":
                found[key] = row
    return found


def atomic_write(path: Path, blob: bytes) -> None:
    """Replace ``path`` with ``blob`` in one step: readers see the old file or the new, never half.
    The bytes go first to ``.<name>.partial-XXXX`` beside it (what ``remove_partial_files`` finds
    if the writer was killed). The file gets the mode any other file gets here (0644 under the
    usual umask), not mkstemp's 0600: results on shared storage are read by others too."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}{PARTIAL}")
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as f:
            f.write(blob)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def umask() -> int:
    """The process's umask, read without changing it where Linux tells it (another thread may be
    creating a file meanwhile), else set and restored at once."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def remove_partial_files(results: Path) -> int:
    """Remove the half-written files killed writers left in the results folder (only its driver,
    which holds the folder's lock, may call this: a live writer's file would go too)."""
    removed = 0
    for path in results.rglob(f".*{PARTIAL}*"):
        if path.is_file():
            path.unlink(missing_ok=True)
            log.info("removed %s, left half-written by a killed run", path)
            removed += 1
    return removed


def metrics_of(row: dict[str, Any]) -> dict[str, float]:
    return json.loads(row["metrics"]) if row.get("metrics") else {}
