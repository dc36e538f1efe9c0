"""Optuna studies as binarena runs them (``binarena tune`` and the ``optuna-mask`` method).

A sampler's random state is not stored in a study, so a study continued after a kill would not
ask what an uninterrupted one would. Hence a sampler is made afresh for every trial, seeded by the
seed and the number of trials so far (``binarena.seeds.derive_seed``): the same study asks the
same settings, however often it was stopped.
"""

from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

SAMPLERS = ("tpe", "random", "nsga2", "gp")


class _Startup(TypedDict, total=False):  # absent: the sampler's own default
    n_startup_trials: int


class _Population(TypedDict, total=False):
    population_size: int


def make_sampler(name: str, seed: int, startup_trials: int | None = None,
                 ) -> optuna.samplers.BaseSampler:
    """The named Optuna sampler, seeded; ``startup_trials`` random trials (NSGA-II: its population)
    before it models the results, Optuna's default where None."""
    import optuna

    startup: _Startup = {} if startup_trials is None else {"n_startup_trials": startup_trials}
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, **startup)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "nsga2":
        population: _Population = (
            {} if startup_trials is None else {"population_size": startup_trials})
        return optuna.samplers.NSGAIISampler(seed=seed, **population)
    if name == "gp":
        with warnings.catch_warnings():  # deterministic_objective is experimental: once per trial
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, deterministic_objective=True, **startup)
    raise ValueError(f"unknown sampler {name!r}; known: {', '.join(SAMPLERS)}")


def fail_stale_trials(study: optuna.Study) -> int:
    """Mark FAIL the trials a killed process left RUNNING (one writer per study, so every RUNNING
    trial seen at its start is stale). Returns how many."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in stale:
        log.warning("trial %d was left running by a killed run: marked failed", trial.number)
        study.tell(trial.number, state=TrialState.FAIL)
    return len(stale)


def is_feasible(trial: optuna.trial.FrozenTrial) -> bool:
    """Optuna 5 keeps constraints by name: a trial is feasible when it has them and every one is
    <= 0 (a trial told without its constraint is not known to be feasible)."""
    return bool(trial.constraints) and all(v <= 0 for v in trial.constraints.values())
