"""Stages and their keys: jobs (what a leaderboard counts: one method, one budget, one seed) and
the shared pre-training each job starts from.

A stage's key hashes everything that determines its result, and nothing else: not the suite that
asks for it, where the data is stored or what it reserves on the cluster. So one key means one
result in the whole results folder: a re-run skips what is recorded, two suites that need the same
stage share it, and nothing is computed or logged twice.

A pre-training stage (``kind == "pretrain"``) is keyed by the data it trains on (the suite's, or
its ``pretrain_dataset``), the model (its layer eligibility aside, unless the suite pre-trains a
BNN: ``pretrain_binary``), its schedule and the seed: every method of a seed starts from its
weights, and the job's key includes the pre-training's key. A full-precision pre-training on the
suite's own data keeps the key it had before either option existed.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from .errors import SuiteError, UserError
from .registry import METHODS
from .suite import BINARY_OPTIMIZER_FIELDS, DatasetSpec, ModelSpec, Resources, Suite, TrainingSpec
from .validation import did_you_mean
from .words import as_written

KEY_FORMAT = 5  # bump when the meaning of a recorded result changes (4: seeds by purpose; 5: the
# data's validation and test subsets drawn by purpose too)
# 2: keys leave out the suite's name; jobs start from a shared pre-training stage (its key in theirs)
# 3: keys hold a fingerprint of the data's content (dataset.fingerprint)

PRETRAIN: Final = "pretrain"  # the kind, method and leaderboard name of a pre-training stage

# Schedule fields added after format 5 enter a key only when set: a schedule that leaves them at
# their defaults keeps the key (and the recorded results) it had.
LATER_TRAINING_FIELDS = ("precision", "channels_last", "binary_optimizer", *BINARY_OPTIMIZER_FIELDS)


def training_identity(schedule: TrainingSpec) -> dict[str, Any]:
    """The schedule as a key sees it: later fields only when set, and no binary optimizer's
    hyper-parameters but the chosen one's."""
    dumped = schedule.model_dump(mode="json")
    idle = schedule.idle_fields()
    for name in LATER_TRAINING_FIELDS:
        if name in idle or getattr(schedule, name) == TrainingSpec.model_fields[name].default:
            del dumped[name]
    return dumped


@dataclass(frozen=True)
class Job:
    """A stage: a job of the leaderboard (``kind == "job"``) or a shared pre-training."""

    suite: str  # the suite that asked for it (not part of the key)
    method: str  # registry name; "pretrain" for a pre-training
    method_label: str  # leaderboard name
    params: dict[str, Any]
    budget: float | None  # FLOPs % remaining; None for methods without a budget
    seed: int
    dataset: DatasetSpec
    model: ModelSpec | None
    training: TrainingSpec  # the schedule after the choice (a pre-training's own schedule)
    resources: Resources
    kind: Literal["job", "pretrain"] = "job"
    start: Literal["pretrained", "scratch"] | None = None  # None: the method builds no model
    pretrain: Job | None = None  # the stage whose weights this job starts from
    binary: bool = False  # a pre-training of a BNN: every eligible layer binary
    key: str = field(default="", compare=False)

    @property
    def label(self) -> str:
        budget = "" if self.budget is None else f"budget={self.budget:g},"
        return f"{self.method_label}[{budget}seed={self.seed}]"

    @property
    def is_pretrain(self) -> bool:
        return self.kind == PRETRAIN

    def identity(self) -> dict[str, Any]:
        if self.is_pretrain:
            assert self.model is not None  # pretraining() is made only for suites with a model
            identity = {
                "format": KEY_FORMAT,
                "kind": PRETRAIN,
                "seed": self.seed,
                "dataset": self.dataset.identity(),
                "model": self.model.model_dump(mode="json",
                                               exclude=set() if self.binary else {"eligible"}),
                "training": training_identity(self.training),
            }
            if self.binary:  # which layers are binary now determines the weights
                identity["network"] = "binary"
            return identity
        return {
            "format": KEY_FORMAT,
            "method": self.method,
            "params": self.params,
            "budget": self.budget,
            "seed": self.seed,
            "dataset": self.dataset.identity(),
            "model": self.model.model_dump(mode="json") if self.model else None,
            "training": training_identity(self.training),
            "start": self.start,
            "pretrain": self.pretrain.key if self.pretrain else None,
        }

    def flat_params(self) -> dict[str, str]:
        """Every setting of the job as flat strings, for MLflow params and the results table."""
        flat: dict[str, str] = {}

        def walk(prefix: str, value: Any) -> None:
            if isinstance(value, dict):
                for k, v in value.items():
                    walk(f"{prefix}.{k}" if prefix else k, v)
            else:
                flat[prefix] = json.dumps(value) if isinstance(value, list) else as_written(value)

        identity = self.identity()
        del identity["format"]
        walk("", identity)
        walk("resources", self.resources.model_dump())
        return flat


def job_key(job: Job) -> str:
    blob = json.dumps(job.identity(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def expand(suite: Suite) -> list[Job]:
    """Every job of the suite: method x budget x seed; a method with no budget runs once per seed.

    A job of a method that builds a model starts, unless its suite entry says ``start: scratch``,
    from the pre-training of its seed (``job.pretrain``): one stage per seed for the whole suite.
    """
    pretrainings = {seed: pretraining(suite, seed) for seed in suite.seeds} if suite.model else {}
    jobs = []
    entry_of: dict[str, int] = {}  # job key -> the method entry that asked for it
    for i, method in enumerate(suite.methods):
        budgets: list[float | None] = list(suite.budgets) if method.uses_budget else [None]
        builds_model = METHODS.get(method.name).needs_model
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
                    start=method.start if builds_model else None,
                    pretrain=pretrainings[seed] if builds_model and method.start == "pretrained"
                    else None,
                )
                job = _with_key(job)
                if job.key in entry_of:
                    _same_jobs(suite, entry_of[job.key], i)
                entry_of[job.key] = i
                jobs.append(job)
    return jobs


def _same_jobs(suite: Suite, first: int, second: int) -> None:
    """Two entries that would compute the same results: one would silently replace the other."""
    a, b = suite.methods[first], suite.methods[second]
    raise SuiteError(
        f"{suite.source}: methods[{first}] ({a.display_name}) and methods[{second}] "
        f"({b.display_name}) would run the same jobs: they differ only in label or resources, "
        "which do not change a result; remove one, or change its params or training")


def pretraining(suite: Suite, seed: int) -> Job:
    """The pre-training of ``seed`` that the suite's methods start from: full precision, or a BNN
    (``pretrain_binary``), on the suite's data or its ``pretrain_dataset``."""
    source = suite.pretrain_dataset
    label = "pre-trained BNN" if suite.pretrain_binary else "pre-trained"
    if source is not None:  # its accuracy is the source's: say so on the target's leaderboard
        label += f" ({source.name})"
    return _with_key(Job(
        suite=suite.name, method=PRETRAIN, method_label=label,
        params={}, budget=None, seed=seed, dataset=source or suite.dataset, model=suite.model,
        training=suite.pretraining, resources=suite.resources, kind=PRETRAIN,
        binary=suite.pretrain_binary,
    ))


def stages(jobs: Iterable[Job]) -> list[Job]:
    """The jobs, each preceded by the pre-training it needs (once, in first-use order)."""
    ordered: dict[str, Job] = {}
    for job in jobs:
        if job.pretrain is not None:
            ordered.setdefault(job.pretrain.key, job.pretrain)
        ordered.setdefault(job.key, job)
    return list(ordered.values())


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
    if missing:  # numbers as the suite writes them (60, not 60.0), names with the closest one
        known = [as_written(p) for p in sorted(present)]
        hint = did_you_mean(missing[0], known) if isinstance(missing[0], str) else ""
        raise UserError(f"{option}: {', '.join(map(as_written, missing))} not in the suite (it "
                        f"has: {', '.join(known) or 'none'}){hint}")


def with_fingerprint(suite: Suite, fingerprint: str | None,
                     source: str | None = None) -> Suite:
    """The suite whose jobs' keys hold ``fingerprint``: a result is tied to the data it came from;
    ``source`` is its ``pretrain_dataset``'s (when it has one and it is given)."""
    update: dict[str, Any] = {"dataset": suite.dataset.model_copy(update={"fingerprint": fingerprint})}
    if suite.pretrain_dataset is not None and source is not None:
        update["pretrain_dataset"] = suite.pretrain_dataset.model_copy(
            update={"fingerprint": source})
    return suite.model_copy(update=update)
