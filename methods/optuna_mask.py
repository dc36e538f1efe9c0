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

The study itself, with torch for its fine-tunes, is in ``binarena.methods.optuna_mask_search``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from binarena.errors import UserError
from binarena.methods.base import LayerSelection, RunContext, register_method
from binarena.methods.finetune_params import CandidateResources, FinetuneScoring

if TYPE_CHECKING:
    from torch import nn

    from binarena.flops import ModelProfile
    from binarena.jobs import Job


class OptunaMaskParams(FinetuneScoring, CandidateResources):
    """The study, and how a feasible mask is scored (``FinetuneScoring``)."""

    trials: int = Field(30, ge=1, description="completed trials of the study (infeasible ones count)")
    sampler: Literal["tpe", "random", "nsga2", "gp"] = "tpe"
    startup_trials: int = Field(10, ge=2, description="random trials before TPE / GP model the "
                                                      "study; NSGA-II's population size")
    repair: bool = Field(True, description="no feasible trial: complete the closest one to the budget")


@register_method
class OptunaMask(LayerSelection):
    """Per-layer binary / full-precision mask searched by an Optuna study (see the module doc)."""

    name = "optuna-mask"
    Params = OptunaMaskParams
    params: OptunaMaskParams

    @classmethod
    def subtask_resources(cls, params):
        """Each feasible mask is scored by the job's candidate worker, one trial at a time."""
        p = cls.Params.model_validate(params)
        return p.candidate_cpus, p.candidate_gpus

    @classmethod
    def check(cls, job: Job, data_root: Path | None) -> None:
        import optuna

        if not hasattr(optuna.trial.Trial, "set_constraint"):
            raise UserError(f"{job.method_label}: optuna-mask needs Optuna >= 5 "
                            f"(Trial.set_constraint); installed: {optuna.__version__}")
        super().check(job, data_root)

    @classmethod
    def work(cls, job):
        """At most ``trials`` fine-tunes: an infeasible mask, or one drawn again, costs none."""
        from binarena.methods.base import Work

        params = cls.Params.model_validate(job.params)
        return Work(job.training.epochs, finetunes=(0, params.trials),
                    steps=(0, params.trials * params.finetune_steps))

    def select(self, ctx: RunContext, model: nn.Module, eligible: list[str],
               profile: ModelProfile) -> list[str]:
        from binarena.methods.optuna_mask_search import search_masks

        return search_masks(self, ctx, model, eligible, profile)
