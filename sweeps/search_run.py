"""Optuna (TPE, seeded) + ASHA searches as one Ray Tune experiment (DESIGN §6).

A sweep's searches — one per arm (``search.py``), one per (arm, outer fold) (``--tune-per-arm``) —
run concurrently as one Tuner; :mod:`sweeps.studies` keeps each search's Optuna study and ASHA
brackets apart, so every free slot of the machine or cluster runs some search's trial.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ray import tune
from ray.tune.result import TRAINING_ITERATION

from erc import contract as C
from erc.vocab import metric_mode
from sweeps.naming import TrialLabels
from sweeps.prepare import Prepared
from sweeps.runner import Outcome, Tracking, run_tuner
from sweeps.settings import SweepSettings
from sweeps.studies import SearchResult, Study, StudyParents, StudyScheduler, StudySearcher
from sweeps.trainable import train_trial

REDUCTION_FACTOR = 3  # ASHA keeps the best third of a study's trials at each rung


@dataclass(frozen=True)
class Searches:
    results: dict[str, SearchResult]  # by study name
    outcome: Outcome
    searcher: StudySearcher  # as Tune saved it at the end: every study's trials


def run_studies(settings: SweepSettings, prepared: Prepared, track: Tracking, studies: Sequence[Study], *,
                metric: str, grace_period: int = 3, trainable: Callable = train_trial,
                bound: Mapping[str, Any] | None = None, parents: Mapping[str, str] | None = None) -> Searches:
    """Run every study's trials in one Tune experiment (resumed if an earlier run was interrupted).

    The tuned ``metric`` sets the direction (losses are minimised). ``parents`` maps a study's name
    to the MLflow run its trials nest under (default: the sweep's parent run).
    """
    mode = metric_mode(metric)
    searcher = StudySearcher(studies, mode=mode, seed=settings.seed)
    asha = {s.name: {"time_attr": TRAINING_ITERATION, "max_t": s.max_epochs, "reduction_factor": REDUCTION_FACTOR,
                     "grace_period": min(grace_period, s.max_epochs)} for s in studies}
    config = tune.TuneConfig(search_alg=searcher, scheduler=StudyScheduler(asha, mode=mode),
                             num_samples=sum(s.budget for s in studies))
    outcome = run_tuner(settings, prepared, track, trainable, {}, labels=TrialLabels(stage=C.SEARCH_STAGE),
                        tune_config=config, bound={"metric": metric, **(bound or {})},
                        parent_of=StudyParents(dict(parents)) if parents else None)
    final = StudySearcher.saved(outcome.results)
    return Searches({s.name: final.result(s.name) for s in studies}, outcome, final)
