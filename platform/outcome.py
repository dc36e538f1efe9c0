"""What became of one stage (a job or a shared pre-training), from the worker to the results table.

A method returns a ``Result`` (its metrics, chosen configuration and files); the runtime wraps it
with what only the driver knows (status, attempts, times, the error) into a ``JobOutcome``, which
tracking logs as an MLflow run and the results table stores as one row of ``ROW_SCHEMA``. One type
all the way, so a field added here reaches every writer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from .version import binarena_version

if TYPE_CHECKING:
    from binarena.methods.base import Result

    from .jobs import Job

ROW_SCHEMA = pa.schema([
    ("key", pa.string()),
    ("kind", pa.string()),  # "job", or "pretrain" for a shared pre-training
    ("suite", pa.string()),
    ("method", pa.string()),
    ("method_label", pa.string()),
    ("budget", pa.float64()),
    ("seed", pa.int64()),
    ("status", pa.string()),  # "ok" or "failed"
    ("accuracy", pa.float64()),
    ("flops", pa.float64()),
    ("flops_pct", pa.float64()),
    ("wall_seconds", pa.float64()),
    ("attempts", pa.int64()),
    ("metrics", pa.string()),  # JSON: every metric the method reported
    ("config", pa.string()),  # JSON: the chosen configuration (e.g. binary layers)
    ("params", pa.string()),  # JSON: every setting of the job
    ("error", pa.string()),
    ("traceback", pa.string()),
    ("mlflow_run_id", pa.string()),
    ("started_at", pa.timestamp("ms", tz="UTC")),
    ("finished_at", pa.timestamp("ms", tz="UTC")),
    ("binarena_version", pa.string()),
])


@dataclass
class JobOutcome:
    job: Job
    status: Literal["ok", "failed"]
    result: Result | None
    started_at: float  # epoch seconds
    finished_at: float
    wall_seconds: float  # inside the job, as measured by its worker
    attempts: int
    error: str | None = None  # one line
    traceback: str | None = None

    @classmethod
    def failure(cls, job: Job, error: str, *, started_at: float | None = None, attempts: int = 0,
                traceback: str | None = None) -> JobOutcome:
        """A stage that ended without a result (``attempts`` 0: it never ran)."""
        now = time.time()
        start = now if started_at is None else started_at
        return cls(job, "failed", None, start, now, now - start, attempts, error, traceback)

    @property
    def metrics(self) -> dict[str, float]:
        return self.result.metrics if self.result else {}

    @property
    def config(self) -> dict[str, Any]:
        return self.result.config if self.result else {}

    def row(self, mlflow_run_id: str) -> dict[str, Any]:
        """The results-table row of this outcome and its MLflow run."""
        job, metrics = self.job, self.metrics

        def at(t: float) -> datetime:
            return datetime.fromtimestamp(t, tz=timezone.utc)

        return {
            "key": job.key, "kind": job.kind, "suite": job.suite, "method": job.method,
            "method_label": job.method_label,
            "budget": job.budget, "seed": job.seed, "status": self.status,
            "accuracy": metrics.get("accuracy"), "flops": metrics.get("flops"),
            "flops_pct": metrics.get("flops_pct"), "wall_seconds": self.wall_seconds,
            "attempts": self.attempts, "metrics": json.dumps(metrics),
            "config": json.dumps(self.config),
            "params": json.dumps(job.flat_params()), "error": self.error,
            "traceback": self.traceback, "mlflow_run_id": mlflow_run_id,
            "started_at": at(self.started_at), "finished_at": at(self.finished_at),
            "binarena_version": binarena_version(),
        }
