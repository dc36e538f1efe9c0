"""Jobs: the units a leaderboard counts (one method, one budget, one seed), and their keys.

A job's key hashes everything that determines its result, so a re-run can skip what is recorded
and nothing is computed or logged twice. Where the data is stored and what a job reserves on the
cluster do not change its result and are not in the key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from binarena.errors import UserError
from binarena.suite import DatasetSpec, ModelSpec, Resources, Suite, TrainingSpec

KEY_FORMAT = 1  # bump when the meaning of a recorded result changes


@dataclass(frozen=True)
class Job:
    suite: str
    method: str  # registry name
    method_label: str  # leaderboard name
    params: dict[str, Any]
    budget: float | None  # FLOPs % remaining; None for methods without a budget
    seed: int
    dataset: DatasetSpec
    model: ModelSpec | None
    training: TrainingSpec
    resources: Resources
    key: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        budget = "" if self.budget is None else f"budget={self.budget:g},"
        return f"{self.method_label}[{budget}seed={self.seed}]"

    def identity(self) -> dict[str, Any]:
        return {
            "format": KEY_FORMAT,
            "suite": self.suite,
            "method": self.method,
            "params": self.params,
            "budget": self.budget,
            "seed": self.seed,
            "dataset": self.dataset.identity(),
            "model": self.model.model_dump(mode="json") if self.model else None,
            "training": self.training.model_dump(mode="json"),
        }

    def flat_params(self) -> dict[str, str]:
        """Every setting of the job as flat strings, for MLflow params and the results table."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                flat[prefix] = json.dumps(value) if isinstance(value, list) else str(value)

        identity = self.identity()
        del identity["format"], identity["suite"]
        walk("", identity)
        walk("resources", self.resources.model_dump())
        return flat


def job_key(job: Job) -> str:
    blob = json.dumps(job.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand(suite: Suite) -> list[Job]:
    """Every job of the suite: method x budget x seed; a method with no budget runs once per seed."""
    jobs = []
    for method in suite.methods:
        budgets: list[float | None] = list(suite.budgets) if method.uses_budget else [None]
        for budget in budgets:
            for seed in suite.seeds:
                job = Job(
                    suite=suite.name,
                    method=method.name,
                    method_label=method.display_name,
                    params=method.params,
                    budget=budget,
                    seed=seed,
                    dataset=suite.dataset,
                    model=suite.model,
                    training=suite.training_for(method),
                    resources=suite.resources_for(method),
                )
                jobs.append(_with_key(job))
    return jobs


def _with_key(job: Job) -> Job:
    object.__setattr__(job, "key", job_key(job))
    return job


def select(
    jobs: Iterable[Job],
    methods: list[str] | None = None,
    budgets: list[float] | None = None,
    seeds: list[int] | None = None,
) -> list[Job]:
    """The jobs matching the command-line filters; a filter value the suite lacks is a user error."""
    jobs = list(jobs)
    _check_filter("--methods", methods, {j.method for j in jobs} | {j.method_label for j in jobs})
    _check_filter("--budgets", budgets, {j.budget for j in jobs if j.budget is not None})
    _check_filter("--seeds", seeds, {j.seed for j in jobs})
    return [
        j
        for j in jobs
        if (methods is None or j.method in methods or j.method_label in methods)
        and (budgets is None or j.budget is None or j.budget in budgets)
        and (seeds is None or j.seed in seeds)
    ]


def _check_filter(option: str, wanted: list | None, present: set) -> None:
    if wanted is None:
        return
    missing = [w for w in wanted if w not in present]
    if missing:
        known = ", ".join(str(p) for p in sorted(present, key=str)) or "none"
        raise UserError(f"{option}: {', '.join(map(str, missing))} not in the suite (it has: {known})")
