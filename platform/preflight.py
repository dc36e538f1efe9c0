"""What a command can refuse before it imports Ray, MLflow and torch (seconds each on a busy
machine): filters the suite lacks, and data that is missing or broken. The driver checks the same
again when it plans (``binarena.orchestrator.make_plan``); this only answers sooner."""

from __future__ import annotations

from pathlib import Path

from .errors import DataNotFound
from .jobs import expand, select
from .registry import DATASETS
from .suite import Suite


def refuse_early(suite: Suite, data_root: Path | None, *, download: bool = False,
                 methods: list[str] | None = None, budgets: list[float] | None = None,
                 seeds: list[int] | None = None) -> None:
    """Raise the ``UserError`` that planning a run of ``suite`` would, where it needs no heavy
    import: a filter value the suite lacks, the suite's data not found (unless it may be
    downloaded) or unreadable."""
    select(expand(suite), methods, budgets, seeds)
    spec = suite.dataset
    root = data_root or (Path(spec.root).expanduser() if spec.root else None)
    try:
        DATASETS.get(spec.name).check(spec, root)
    except DataNotFound:
        if not (download or spec.download):  # else the plan fetches it
            raise
