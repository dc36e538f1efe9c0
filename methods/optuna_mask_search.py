"""The optuna-mask study, with torch for its fine-tune scores: ``binarena.methods.optuna_mask``
declares the method and says how it chooses; this module runs the study when a job runs."""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from binarena.methods.base import RunContext
from binarena.methods.budget import until_budget
from binarena.methods.finetune import FinetuneStep, score_by_finetune
from binarena.methods.finetune_params import CandidateResources, FinetuneScoring
from binarena.plots import png_figure
from binarena.seeds import derive_seed
from binarena.selection import state_bytes
from binarena.studies import fail_stale_trials, is_feasible, make_sampler
from binarena.words import counted

if TYPE_CHECKING:
    import optuna
    from torch import nn

    from binarena.flops import ModelProfile
    from binarena.methods.optuna_mask import OptunaMask

log = logging.getLogger(__name__)

STUDY_NAME = "optuna-mask"
CONSTRAINT = "flops"  # the constraint's key: FLOPs % over the budget


def search_masks(method: OptunaMask, ctx: RunContext, model: nn.Module, eligible: list[str],
                 profile: ModelProfile) -> list[str]:
    """Run the job's study to ``trials`` completed trials (resuming a killed one), and choose."""
    from optuna.trial import TrialState

    params = method.params
    budget = 100.0 if ctx.job.budget is None else float(ctx.job.budget)
    folder = ctx.workdir / "optuna-mask"
    folder.mkdir(parents=True, exist_ok=True)
    scoring = FinetuneScoring(**params.model_dump(include=set(FinetuneScoring.model_fields)))
    step = FinetuneStep(ctx.job, str(ctx.data_root) if ctx.data_root else None, state_bytes(model),
                        scoring, derive_seed(ctx.job.seed, "optuna-mask/finetune"),
                        params.candidate_cpus)
    signature = {"eligible": eligible, "budget": budget, "seed": ctx.job.seed,
                 "sampler": params.sampler, "startup_trials": params.startup_trials,
                 "scoring": scoring.model_dump(mode="json")}

    with opened_study(folder / "study.db") as study:
        _check_signature(study, signature)
        stale = fail_stale_trials(study)
        if stale:
            log.info("%s: %d trial(s) of a killed run marked FAIL", ctx.job.label, stale)
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        scores = {frozenset(trial_mask(t, eligible)): (trial_value(t), t.number)
                  for t in done if is_feasible(t) and "repeat_of" not in t.user_attrs}
        if done:
            ctx.progress(f"{ctx.job.label}: resuming the study at {counted(len(done), 'trial')}")
        start = time.perf_counter()
        for completed in range(len(done), params.trials):
            study.sampler = make_sampler(params.sampler,
                                         derive_seed(ctx.job.seed, "optuna-mask/sampler",
                                                     completed),
                                         params.startup_trials)
            trial = study.ask()
            try:
                value, note = evaluate(ctx, trial, eligible, profile, budget, step, params,
                                       scores)
            except Exception:
                study.tell(trial, state=TrialState.FAIL)
                raise
            study.tell(trial, value)
            ctx.sub_progress(completed + 1, params.trials, "trials")
            ctx.progress(f"{ctx.job.label}: trial {trial.number} {note} -> {value:.4f}")
        trials = study.get_trials(deepcopy=False)

    chosen, best_value, repaired = choose(trials, eligible, profile, budget, params.repair,
                                          ctx.job.label)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    method.search_metrics.update({
        "optuna_trials": float(len(complete)),
        "feasible_trials": float(sum(is_feasible(t) for t in complete)),
        "best_value": best_value,
        "repaired": float(repaired),
        "search_loop_seconds": time.perf_counter() - start,
    })
    method.search_artifacts.update(trial_artifacts(trials, eligible, ctx.job.label))
    return chosen


@contextmanager
def opened_study(path: Path) -> Iterator[optuna.Study]:
    """The job's study in SQLite at ``path``, created or loaded; the file is released on exit
    (a long-lived Ray worker runs many jobs)."""
    import optuna

    path.parent.mkdir(parents=True, exist_ok=True)
    storage = optuna.storages.RDBStorage(url=f"sqlite:///{path.resolve()}")
    try:
        yield optuna.create_study(storage=storage, study_name=STUDY_NAME, direction="minimize",
                                  load_if_exists=True)
    finally:
        storage.engine.dispose()


def penalty(num_classes: int, overshoot: float) -> float:
    """The value of an infeasible mask: a uniform guess's loss, raised with the FLOPs overshoot."""
    return math.log(max(num_classes, 2)) * (1 + max(overshoot, 0.0) / 100)


def trial_mask(trial: optuna.trial.FrozenTrial, eligible: list[str]) -> list[str]:
    """The binary layers of a trial, in network order."""
    return [name for name in eligible if trial.params.get(name) == 1]


def trial_value(trial: optuna.trial.FrozenTrial) -> float:
    """The objective of a COMPLETE trial (the study has one objective, so it is set)."""
    assert trial.value is not None, f"trial {trial.number} is not COMPLETE"
    return trial.value


def evaluate(ctx: RunContext, trial: optuna.Trial, eligible: list[str], profile: ModelProfile,
             budget: float, step: FinetuneStep, resources: CandidateResources,
             scores: dict[frozenset[str], tuple[float, int]]) -> tuple[float, str]:
    """One trial: suggest the mask, set the constraint, score it if feasible (or reuse) on the
    job's candidate worker (``step``, the same object every trial, travels to it once)."""
    mask = [name for name in eligible if trial.suggest_categorical(name, [0, 1]) == 1]
    flops = profile.flops_pct_with(mask)
    overshoot = flops - budget
    trial.set_constraint(CONSTRAINT, overshoot)
    trial.set_user_attr("flops_pct", flops)
    described = f"{len(mask)} binary, {flops:.1f}% FLOPs"
    if overshoot > 0:
        return penalty(ctx.data.num_classes, overshoot), f"({described}, over budget)"
    key = frozenset(mask)
    if key in scores:
        value, number = scores[key]
        trial.set_user_attr("repeat_of", number)
        return value, f"({described}, as trial {number})"
    ((value, _),) = ctx.executor.map(score_by_finetune, step, [tuple(mask)],
                                     cpus=resources.candidate_cpus, gpus=resources.candidate_gpus)
    scores[key] = (value, trial.number)
    return value, f"({described})"


def choose(trials: list[optuna.trial.FrozenTrial], eligible: list[str], profile: ModelProfile,
           budget: float, repair: bool, label: str) -> tuple[list[str], float, bool]:
    """The best feasible trial's mask; else the repair (see ``binarena.methods.optuna_mask``)."""
    from optuna.trial import TrialState

    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    feasible = [t for t in complete if is_feasible(t)]
    if feasible:  # ties (a harmless extra binary layer) go to the cheaper mask
        best = min(feasible, key=lambda t: (trial_value(t), t.user_attrs["flops_pct"], t.number))
        return trial_mask(best, eligible), trial_value(best), False
    if not repair:
        raise RuntimeError(f"{label}: none of the {len(complete)} trials met the "
                           f"{budget:g}% budget; raise trials or set repair: true")
    closest = min(complete, key=lambda t: (sum(t.constraints.values()), t.number))
    start = trial_mask(closest, eligible)
    rest = sorted((n for n in eligible if n not in start),
                  key=lambda n: (profile.flops_pct_with([n]), eligible.index(n)))
    chosen = until_budget(start + rest, profile, budget)
    log.info("%s: no feasible trial; repaired trial %d's mask to %s", label,
             closest.number, chosen)
    return chosen, float("nan"), True


def _check_signature(study: optuna.Study, signature: dict[str, Any]) -> None:
    """A study is resumed only for the job that made it (the job key normally guarantees it)."""
    stored = study.user_attrs.get("signature")
    if stored is None:
        study.set_user_attr("signature", signature)
    elif stored != signature:
        raise ValueError(f"the study in the working folder was made for other settings: "
                         f"{stored} != {signature}")


def trial_artifacts(trials: list[optuna.trial.FrozenTrial], eligible: list[str],
                    title: str) -> dict[str, bytes]:
    """The trials as Parquet, and the objective per trial as a PNG."""
    from optuna.trial import TrialState

    rows = [{"number": t.number, "mask": trial_mask(t, eligible),
             "flops_pct": t.user_attrs.get("flops_pct"),
             "value": t.value if t.state == TrialState.COMPLETE else None,
             "feasible": is_feasible(t), "state": t.state.name} for t in trials]
    table = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema([
        ("number", pa.int64()), ("mask", pa.list_(pa.string())), ("flops_pct", pa.float64()),
        ("value", pa.float64()), ("feasible", pa.bool_()), ("state", pa.string())])), table)
    from matplotlib.ticker import MaxNLocator

    done = [(t.number, trial_value(t), is_feasible(t)) for t in trials
            if t.state == TrialState.COMPLETE]
    styles = ((True, "o", "C0", "feasible"), (False, "x", "C3", "over budget (penalised)"))
    best, line = math.inf, []
    for _, value, feasible in done:
        if feasible:
            best = min(best, value)
        line.append(best if best < math.inf else np.nan)
    png = io.BytesIO()
    with png_figure(png) as (fig, ax):
        for feasible, marker, color, label in styles:
            points = [(number, value) for number, value, f in done if f == feasible]
            if points:
                ax.scatter([n for n, _ in points], [v for _, v in points], s=16, marker=marker,
                           color=color, label=label)
        if done:
            ax.step([n for n, _, _ in done], line, where="post", color="C2",
                    label="best feasible")
            ax.legend(fontsize=8)
        ax.set_xlabel("trial")
        ax.set_ylabel("validation loss after fine-tune")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(f"{title}\nOptuna mask search", fontsize=8)  # job labels are long
    return {"optuna_trials.parquet": table.getvalue(), "optuna_trials.png": png.getvalue()}
