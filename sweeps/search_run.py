"""Optuna (TPE, seeded) + ASHA over a YAML search space, as one Ray Tune sweep (DESIGN §6).

One Tuner cannot mix ``grid_search`` with ``OptunaSearch``, so a search is its own Tuner over one
arm (the scientific factors fixed); per-arm tuning runs one such search per arm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import yaml
from optuna.samplers import TPESampler
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search.optuna import OptunaSearch

from sweeps.prepare import Prepared
from sweeps.runner import Outcome, Tracking, run_tuner
from sweeps.settings import SweepSettings
from sweeps.spaces import SearchSpace
from sweeps.trainable import search_trial


def fold_splits(folds_of_rows: np.ndarray, folds: list[int]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Plain CV splits: validate on each of ``folds``, train on the rest."""
    rows = np.arange(len(folds_of_rows))
    return [(f"fold{k}", rows[folds_of_rows != k], rows[folds_of_rows == k]) for k in folds]


class _SearchRunName:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, config: dict) -> str:
        short = {k: (f"{v:.3g}" if isinstance(v, float) else v) for k, v in config.items()
                 if k in ("lr", "dim", "depth", "proj_dim", "batch_size")}
        return self.prefix + " " + ",".join(f"{k}={v}" for k, v in short.items())


class _SearchTags:
    def __init__(self, tags: dict[str, str]) -> None:
        self.tags = tags

    def __call__(self, config: dict) -> dict[str, str]:
        return {"stage": "search", "fusion": str(config.get("fusion")), "labels": str(config.get("labels")),
                "arm": f"{config.get('fusion')}-{config.get('labels')}", **self.tags}


def run_search(settings: SweepSettings, prepared: Prepared, track: Tracking, space: SearchSpace, *,
               scientific: dict[str, Any], splits: list[tuple[str, np.ndarray, np.ndarray]], num_samples: int,
               metric: str = "acc", mode: str = "max", grace_period: int = 3, run_prefix: str = "search",
               extra_tags: dict[str, str] | None = None, sweep_suffix: str = "",
               points_to_evaluate: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], Outcome]:
    """Search the space's nuisance parameters for one arm; return the best config and the outcome.

    ``scientific`` fixes the arm (and may carry other fixed fit-config values, e.g. the preset).
    """
    param_space = space.tune_space(**scientific)
    for key, value in scientific.items():
        param_space.setdefault(key, value)
    param_space["seed"] = settings.seed
    if settings.epochs is not None:
        param_space["epochs"] = settings.epochs
    epochs = int(param_space.get("epochs") or 15)
    searcher = OptunaSearch(sampler=TPESampler(seed=settings.seed), metric="score", mode=mode,
                            points_to_evaluate=points_to_evaluate)
    scheduler = ASHAScheduler(time_attr="training_iteration", metric="score", mode=mode, max_t=epochs,
                              grace_period=min(grace_period, epochs), reduction_factor=3)
    config = tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=num_samples)
    bound = {"splits": splits, "metric": metric, "mode": mode}
    sub = Tracking(track.client, track.uri, track.experiment_id, track.parent_run_id,
                   track.sweep + sweep_suffix, track.tags)
    outcome = run_tuner(settings, prepared, sub, search_trial, param_space, run_name=_SearchRunName(run_prefix),
                        trial_tags=_SearchTags(extra_tags or {}), tune_config=config, bound=bound)
    if outcome.interrupted:  # the caller stops; the best of a partial search means nothing
        return {}, outcome
    best = outcome.results.get_best_result(metric="score", mode=mode)
    tuned = {k: v for k, v in best.config.items() if k in space.params and space.params[k].role != "scientific"}
    tuned["_score"] = float(best.metrics["score"])
    return tuned, outcome


def write_best_config(path: Path, tuned: dict[str, Any], *, arm: str, metric: str, sweep: str,
                      num_samples: int, folds: list[int]) -> Path:
    """The YAML ``ablation.py --config`` takes: the tuned values, with where they came from."""
    values = {k: (v.item() if hasattr(v, "item") else v) for k, v in tuned.items() if not k.startswith("_")}
    header = (f"# Best configuration of search {sweep!r} for arm {arm}: mean valid {metric} = "
              f"{tuned['_score']:.4f} over folds {folds}, {num_samples} samples (OptunaSearch TPE + ASHA).\n"
              f"# Use with: python sweeps/ablation.py --config {path}\n")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + yaml.safe_dump(values, sort_keys=True))
    return path
