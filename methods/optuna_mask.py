"""``optuna-mask``: layer selection by an Optuna study over the per-layer binary / full-precision
choice, so Optuna's own samplers (TPE, random, NSGA-II, GP) sit on the leaderboard beside MixBin.

One trial is one mask: for every eligible layer a categorical {0, 1} (1 = binary). The FLOPs
budget is a constraint set inside the objective (Optuna 5: ``trial.set_constraint("flops", v)``
with ``v = flops_pct_with(mask) - budget``, feasible when ``v <= 0``). The objective of a feasible
mask is MixBin-loss's score: the validation loss of the pre-trained network with that mask after
a short fine-tune (``score_by_finetune``, ``finetune_steps`` SGD steps), lower is better. The
chosen B2NN is the best feasible trial's mask, then trained like every layer selection.

Choices, and why:

- Infeasible masks cost nothing: they are not fine-tuned or scored. They are still recorded as
  COMPLETE trials, with their constraint *and* a penalised value ``ln(C) * (1 + overshoot / 100)``
  (C classes; ``ln(C)`` is the loss of a uniform guess, raised with the FLOPs overshoot in
  percentage points). Marking them by the constraint alone (a pruned or failed trial) would hide
  them from the samplers that model only COMPLETE trials (NSGA-II's population, the GP's
  constraint model); with a COMPLETE trial, TPE ranks every infeasible trial after every feasible
  one and among themselves by overshoot (so it learns to move toward the budget), NSGA-II applies
  constrained domination, and the GP fits its constraint model; the penalised value only matters
  to a reader that ignores constraints, and it says "worse, the more over budget".
- Every feasible mask is scored with the same fine-tune batches (``step`` 0 for all), so scores
  compare masks, not batch orders, and a score is a function of the mask: a mask a sampler draws
  again reuses the recorded value instead of fine-tuning again (``repeat_of`` on the trial).
- The study lives in ``<workdir>/optuna-mask/study.db``: SQLite through ``RDBStorage``. SQLite
  commits are atomic, so a job killed mid-write finds the study as of its last finished trial
  (a journal file can be left with a torn last line that breaks the next append). The study is
  opened with ``load_if_exists``; trials a killed process left RUNNING are marked FAIL; only the
  missing number of COMPLETE trials runs. On a cluster the working folder is shared storage;
  SQLite there is fine because a job's folder has one writer at a time.
- Trials run one after another inside the job (the job is one Ray task; parallelism is across
  jobs). The sampler is made afresh for every trial, seeded by (job seed, number of completed
  trials): the same job gives the same trials and choice, and a resumed study samples exactly what
  an uninterrupted one would (a sampler's random state is not stored in the study).
- ``startup_trials``: the random trials before TPE / GP model the study, and NSGA-II's population
  size (Optuna's default, 50, would leave a 30-trial study random).
- The choice is the feasible trial of lowest value; among equal values (an extra layer whose
  binarization costs nothing) the one of fewer FLOPs.
- ``repair`` (default true): if no trial was feasible, start from the binary layers of the trial
  closest to the budget and add the remaining layers, largest FLOPs saving first, until the
  budget holds (``until_budget``). Without it the job fails, saying so.
- The trials fine-tune from the job's starting network (the shared pre-training) only to score
  masks; the chosen B2NN is trained from the starting weights, like every method's choice.

Artifacts: ``optuna_trials.parquet`` (number, mask as the list of binary layers, flops_pct, value,
feasible, state) and ``optuna_trials.png`` (objective per trial, feasible / infeasible, best so
far). Metrics: ``optuna_trials``, ``feasible_trials``, ``best_value``, ``repaired``.
"""

from __future__ import annotations

import io
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field
from torch import nn

from binarena.errors import UserError
from binarena.flops import ModelProfile
from binarena.jobs import Job
from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.budget import until_budget
from binarena.methods.finetune import Candidate, FinetuneScoring, score_by_finetune
from binarena.plots import png_figure
from binarena.seeds import derive_seed
from binarena.selection import state_bytes
from binarena.studies import fail_stale_trials, is_feasible, make_sampler

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

STUDY_NAME = "optuna-mask"
CONSTRAINT = "flops"  # the constraint's key: FLOPs % over the budget
SAMPLERS = ("tpe", "random", "nsga2", "gp")


class OptunaMaskParams(FinetuneScoring):
    """The study, and how a feasible mask is scored (``FinetuneScoring``)."""

    trials: int = Field(30, ge=1, description="completed trials of the study (infeasible ones count)")
    sampler: Literal["tpe", "random", "nsga2", "gp"] = "tpe"
    startup_trials: int = Field(10, ge=2, description="random trials before TPE / GP model the "
                                                      "study; NSGA-II's population size")
    repair: bool = Field(True, description="no feasible trial: complete the closest one to the budget")


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


@register_method
class OptunaMask(LayerSelection):
    """Per-layer binary / full-precision mask searched by an Optuna study (see the module doc)."""

    name = "optuna-mask"
    Params = OptunaMaskParams
    params: OptunaMaskParams

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        import optuna

        if not hasattr(optuna.trial.Trial, "set_constraint"):
            raise UserError(f"{job.method_label}: optuna-mask needs Optuna >= 5 "
                            f"(Trial.set_constraint); installed: {optuna.__version__}")
        super().check(job, data_root)

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from optuna.trial import TrialState

        params = self.params
        budget = 100.0 if ctx.job.budget is None else float(ctx.job.budget)
        folder = ctx.workdir / "optuna-mask"
        folder.mkdir(parents=True, exist_ok=True)
        state = state_bytes(model)
        scoring = FinetuneScoring(**params.model_dump(include=set(FinetuneScoring.model_fields)))
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
                ctx.progress(f"{ctx.job.label}: resuming the study at {len(done)} trials")
            start = time.perf_counter()
            for completed in range(len(done), params.trials):
                study.sampler = make_sampler(params.sampler,
                                             derive_seed(ctx.job.seed, "optuna-mask/sampler",
                                                         completed),
                                             params.startup_trials)
                trial = study.ask()
                try:
                    value, note = self._evaluate(ctx, trial, eligible, profile, budget, state,
                                                 scoring, scores)
                except Exception:
                    study.tell(trial, state=TrialState.FAIL)
                    raise
                study.tell(trial, value)
                ctx.sub_progress(completed + 1, params.trials, "trials")
                ctx.progress(f"{ctx.job.label}: trial {trial.number} {note} -> {value:.4f}")
            trials = study.get_trials(deepcopy=False)

        chosen, best_value, repaired = self._choose(trials, eligible, profile, budget,
                                                    ctx.job.label)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        self.search_metrics.update({
            "optuna_trials": float(len(complete)),
            "feasible_trials": float(sum(is_feasible(t) for t in complete)),
            "best_value": best_value,
            "repaired": float(repaired),
            "search_loop_seconds": time.perf_counter() - start,
        })
        self.search_artifacts.update(trial_artifacts(trials, eligible, ctx.job.label))
        return chosen

    def _evaluate(self, ctx: RunContext, trial: optuna.Trial, eligible: list[str],
                  profile: ModelProfile, budget: float, state: bytes, scoring: FinetuneScoring,
                  scores: dict[frozenset[str], tuple[float, int]]) -> tuple[float, str]:
        """One trial: suggest the mask, set the constraint, score it if feasible (or reuse)."""
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
        candidate = Candidate(ctx.job, str(ctx.data_root) if ctx.data_root else None, state,
                              tuple(mask), scoring, derive_seed(ctx.job.seed, "optuna-mask/finetune"))
        value, _ = score_by_finetune(candidate)
        scores[key] = (value, trial.number)
        return value, f"({described})"

    def _choose(self, trials: list[optuna.trial.FrozenTrial], eligible: list[str],
                profile: ModelProfile, budget: float, label: str) -> tuple[list[str], float, bool]:
        """The best feasible trial's mask; else the repair (see the module doc)."""
        from optuna.trial import TrialState

        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        feasible = [t for t in complete if is_feasible(t)]
        if feasible:  # ties (a harmless extra binary layer) go to the cheaper mask
            best = min(feasible, key=lambda t: (trial_value(t), t.user_attrs["flops_pct"], t.number))
            return trial_mask(best, eligible), trial_value(best), False
        if not self.params.repair:
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
