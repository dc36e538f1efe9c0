"""The standings of a suite from what its results folder holds: the rows of the suite as it is now
defined, ranked, and the protocol they were made under. Reads Parquet only (no Ray, MLflow or
torch), so ``binarena leaderboard`` answers at once; the driver ranks through it too."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path

from . import leaderboard
from .jobs import Job, expand, stages, with_fingerprint
from .results import ResultsTable
from .suite import Suite
from .words import counted

log = logging.getLogger(__name__)


def recorded_fingerprint(table: ResultsTable, kinds: tuple[str, ...] = ("job", "pretrain"),
                         ) -> str | None:
    """The data fingerprint of the table's latest recorded row of these kinds: what a leaderboard
    shows when it does not read the data itself (if rows of other data are recorded too, a
    warning says so)."""
    rows = [r for r in table.to_pylist()
            if r.get("finished_at") is not None and r.get("kind", "job") in kinds]
    counts: dict[str, int] = {}  # rows per fingerprint, the latest first
    for row in sorted(rows, key=lambda r: r["finished_at"], reverse=True):
        fingerprint = json.loads(row.get("params") or "{}").get("dataset.fingerprint")
        if fingerprint not in (None, "None"):
            counts[fingerprint] = counts.get(fingerprint, 0) + 1
    if not counts:
        return None
    latest = next(iter(counts))
    if len(counts) > 1:
        others = ", ".join(f"{counted(n, 'row')} of data {f}" for f, n in counts.items()
                           if f != latest)
        log.warning("%s holds rows of more than one version of the data: ranking the %d rows of "
                    "the latest, %s (besides %s)",
                    table.path, counts[latest], latest, others)
    return latest


def ranking(table: ResultsTable, jobs: Iterable[Job], suite: str,
            baseline: str = leaderboard.BASELINE) -> list[leaderboard.Entry]:
    """The leaderboard of ``table``'s rows that are stages of ``jobs`` (the suite as it is now
    defined, under the labels it gives them now), compared with ``baseline``; rows recorded under
    other keys stay in the table, unranked."""
    labels = {job.key: job.method_label for job in jobs}
    stale = len(set(table.rows) - set(labels))
    if stale:  # never mixed in: another definition of the suite, or an older protocol's keys
        log.warning("%d rows of %s were recorded under another definition of suite %s, from "
                    "other data, or under an older binarena protocol; they stay in the table but "
                    "are not ranked", stale, table.path, suite)
    return leaderboard.build(table.to_pylist(), labels, baseline)


def recorded_ranking(suite: Suite, folder: Path) -> list[leaderboard.Entry]:
    """The leaderboard of what ``folder`` holds for ``suite``, over the data its rows were
    recorded with (read from the rows, not from the data)."""
    table = ResultsTable.open(folder / "results.parquet")  # read once, for both
    return ranking(table, recorded_stages(suite, table), suite.name, suite.baseline)


def recorded_labels(suite: Suite, table: ResultsTable) -> dict[str, str]:
    """Key -> label of ``suite``'s stages recorded in ``table``, under the labels the suite gives
    them now (a row renamed in the suite keeps its results), for reports that read the rows."""
    return {job.key: job.method_label for job in recorded_stages(suite, table)
            if job.key in table.rows}


def recorded_stages(suite: Suite, table: ResultsTable) -> list[Job]:
    """The suite's stages as its rows in ``table`` were recorded: over the data they name."""
    if suite.pretrain_dataset is None:
        current = with_fingerprint(suite, recorded_fingerprint(table))
    else:  # the pre-trainings' rows hold their own data's fingerprint
        current = with_fingerprint(suite, recorded_fingerprint(table, ("job",)),
                                   recorded_fingerprint(table, ("pretrain",)))
    return stages(expand(current))


def _seeds(suite: Suite) -> str:
    return f"{len(suite.seeds)} seed{'' if len(suite.seeds) == 1 else 's'}"


def own_procedure(suite: Suite) -> list[str]:
    """Methods that build and train their own networks (BeMi, BDNNs): the schedule is not theirs."""
    from .registry import METHODS

    return sorted({m.display_name for m in suite.methods if not METHODS.get(m.name).needs_model})


def protocol(suite: Suite) -> str:
    """One line on how the rows of the suite's leaderboard were made, for every output of it."""
    train = suite.training
    own = own_procedure(suite)
    if len(own) == len(suite.methods):
        return (f"every method trains a network of its own by its own procedure (no shared "
                f"schedule) on the seed's data; {_seeds(suite)}, differences paired by seed")
    own_note = f"; by their own procedure: {', '.join(own)}" if own else ""
    if not any(j.pretrain for j in expand(suite)):
        return (f"every method trains from the seed's initialisation for "
                f"{counted(train.epochs, 'epoch')}"
                f"{own_note}")
    pre = suite.pretraining
    scratch = sorted({m.display_name for m in suite.methods if m.start == "scratch"})
    note = f"; from scratch: {', '.join(scratch)}" if scratch else ""
    network = (f"BNN (every eligible layer binary, {pre.binary_optimizer})"
               if suite.pretrain_binary else "full-precision")
    # a pre-trained BNN is fine-tuned by each row's optimizer; a full-precision one gets binary
    # layers where the method chooses them
    then = "fine-tunes it" if suite.pretrain_binary else "trains its choice"
    source = suite.pretrain_dataset
    data = "" if source is None else f" on {source.name}"
    return (f"every method of a seed starts from one shared {network} pre-training{data} "
            f"({counted(pre.epochs, 'epoch')}), then {then} for "
            f"{counted(train.epochs, 'epoch')}{note}"
            f"{own_note}; "
            f"{_seeds(suite)}, differences paired by seed")
