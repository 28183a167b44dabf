"""Optuna (TPE, seeded) + ASHA over a YAML search space, as one Ray Tune sweep (DESIGN §6).

One Tuner cannot mix ``grid_search`` with ``OptunaSearch``, so a search is its own Tuner over one
arm (the scientific factors fixed); per-arm tuning runs one such search per arm.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import yaml
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from erc.config import RunConfig
from erc.metrics import metric_mode
from sweeps.naming import TrialLabels
from sweeps.prepare import Prepared
from sweeps.runner import Outcome, Tracking, run_tuner
from sweeps.settings import SweepSettings
from sweeps.spaces import SearchSpace
from sweeps.trainable import Split, train_trial


@dataclass(frozen=True)
class SearchResult:
    best: dict[str, Any]  # the nuisance values of the best trial (what a config file for the grid holds)
    score: float  # its score: the best epoch's mean validation metric over the splits
    scores: list[float]  # every trial's final score, in the order the trials were created
    outcome: Outcome
    default_score: float | None = None  # the score of the first point evaluated (the untuned defaults)


def plain_value(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def run_search(settings: SweepSettings, prepared: Prepared, track: Tracking, space: SearchSpace, *,
               fixed: dict[str, Any], splits: list[Split], num_samples: int, metric: str,
               grace_period: int = 3, labels: TrialLabels, sweep_suffix: str = "",
               points_to_evaluate: list[dict[str, Any]] | None = None) -> SearchResult:
    """Search the space's nuisance parameters with ``fixed`` run-config values (the arm, the preset …).

    The direction comes from the metric: losses are minimised, everything else maximised.
    """
    mode = metric_mode(metric)
    nuisance = space.by_role("nuisance")
    # the space's domains; the sweep's own values (preset, seed, --epochs …) win over its fixed entries
    param_space = {**space.tune_space(), **{k: v for k, v in settings.base_config().items() if k not in nuisance},
                   **fixed}
    if "epochs" in nuisance:
        max_t = int(nuisance["epochs"].high)
    else:
        max_t = RunConfig.from_flat({"epochs": param_space["epochs"]} if "epochs" in param_space else {}).optim.epochs
    searcher = OptunaSearch(sampler=TPESampler(seed=settings.seed), metric="score", mode=mode,
                            points_to_evaluate=points_to_evaluate)
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="score", mode=mode, max_t=max_t,
                              grace_period=min(grace_period, max_t), reduction_factor=3)
    config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples)
    sub = replace(track, sweep=track.sweep + sweep_suffix)
    outcome = run_tuner(settings, prepared, sub, train_trial, param_space, labels=labels, tune_config=config,
                        bound={"splits": splits, "metric": metric})
    best = outcome.results.get_best_result(metric="score", mode=mode)
    tuned = {k: plain_value(v) for k, v in best.config.items() if k in nuisance}
    worst = float("inf") if mode == "min" else float("-inf")
    # A searcher's trial ids are random (uuid4), so creation order is the result grid's order, not
    # the ids' sort order; the evaluated defaults are found by their config.
    results = list(outcome.results)
    scores = [float(r.metrics.get("score", worst)) if r.metrics else worst for r in results]
    default_score = None
    if points_to_evaluate:
        point = points_to_evaluate[0]
        matches = [s for r, s in zip(results, scores, strict=True)
                   if all(r.config.get(k) == v for k, v in point.items())]
        default_score = matches[0] if matches else None
    return SearchResult(tuned, float(best.metrics["score"]), scores, outcome, default_score)


def write_best_config(path: Path, result: SearchResult, *, arm: str, metric: str, sweep: str,
                      num_samples: int, folds: list[int]) -> Path:
    """The YAML ``ablation.py --config`` takes: the tuned values, with where they came from."""
    header = (f"# Best configuration of search {sweep!r} for arm {arm}: mean valid {metric} = "
              f"{result.score:.4f} over folds {folds}, {num_samples} samples (OptunaSearch TPE + ASHA).\n"
              f"# Use with: python sweeps/ablation.py --config {path}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(result.best, sort_keys=True))
    return path


