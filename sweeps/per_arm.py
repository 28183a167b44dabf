"""Fair ablations: tune each arm's nuisance hyper-parameters before the arms are compared.

The Deep Learning Tuning Playbook's rule: the ablated factors (fusion, labels) are scientific;
learning rate, weight decay, sizes … are nuisance and are tuned separately for every arm, with
the same budget, before the comparison. Here that is nested cross-validation:

* for every arm and every outer fold k, one Optuna search (TPE, the sweep's seed, N trials, the
  arm's search-space file, nuisance parameters only) whose trials train on three of the four
  training fold groups and score on the fourth (group (k+1) mod 5) — the outer validation fold k
  is never seen while tuning;
* the search's first trial is the untuned default configuration, so every arm's gain from its
  own tuning is measured on the same inner split;
* the grid trial (fold k, arm) then runs with that search's best configuration.

All searches run at once, as one Tune experiment (:mod:`sweeps.studies`: one Optuna study and one
ASHA per search, never informed or stopped by another arm's trials), so every free slot runs some
search's trial. The tuned metric is the sweep's ``select_metric``, in its own direction (losses are
minimised).
MLflow: grid parent → one ``role=search`` run per (arm, fold) → its search trials
(``stage=search``), so tools reading the grid can tell them apart.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from erc import contract as C
from erc.config import RunConfig
from erc.contract import search_all
from erc.table import FeatureTable
from erc.vocab import N_FOLDS, NO_FOLD, metric_mode
from sweeps import tracking
from sweeps.prepare import Prepared
from sweeps.runner import Outcome, Tracking
from sweeps.search_run import run_studies
from sweeps.settings import SweepSettings
from sweeps.spaces import SearchSpace, load_space
from sweeps.studies import SearchResult, Study
from sweeps.trainable import Split, train_trial

SEARCH_SUFFIX = "-search"  # the searches' Tune experiment: the sweep's name with this suffix


def inner_split(outer: int) -> Split:
    """Validate on the fold after ``outer``; train on the other three; fold ``outer`` is left out. An
    official partition's trial (``NO_FOLD``) has no folds: its search scores on the dev part
    (:func:`sweeps.trainable.search_split`), never on the test part the grid reports."""
    if outer == NO_FOLD:
        return NO_FOLD, ()
    return (outer + 1) % N_FOLDS, (outer,)


def default_point(space: SearchSpace, base: dict[str, Any]) -> dict[str, Any]:
    """The untuned configuration (the sweep's values, else the defaults), placed inside the space."""
    defaults = RunConfig.from_flat(base).to_flat()
    point = {}
    for name, p in space.by_role("nuisance").items():
        value = defaults[name]
        if p.distribution == "choice":
            value = value if value in p.values else p.values[0]
        else:
            value = float(np.clip(value, p.low, p.high))
            value = round(value) if p.distribution == "int" else value
        point[name] = value
    return point


def _search_run(track: Tracking, arm: str, fold: int) -> tuple[str, bool]:
    """The (arm, fold) search's MLflow run under the grid parent, found again on a rerun or created,
    and whether it had finished already."""
    found = search_all(track.client, track.experiment_id,
                       C.tag_filter({C.SWEEP: track.sweep, C.ROLE: C.SEARCH_ROLE, C.ARM: arm, C.FOLD: fold}))
    if found:
        run = found[0].info
        if run.status == "FINISHED":
            return run.run_id, True
        track.client.update_run(run.run_id, status="RUNNING")
        return run.run_id, False
    return track.client.create_run(track.experiment_id, run_name=f"search {arm} fold{fold}", tags={
        **track.tags, C.PARENT_RUN_ID: track.parent_run_id, C.STAGE: C.SEARCH_STAGE, C.ROLE: C.SEARCH_ROLE,
        C.ARM: arm, C.FOLD: str(fold)}).info.run_id, False


def train_inner_split(config: dict[str, Any], data: FeatureTable, settings: Mapping[str, Any]) -> None:
    """A search trial of outer fold ``config['fold']``: trained and scored on that fold's inner split."""
    train_trial(config, data, {**settings, "splits": [inner_split(int(config[C.FOLD]))]})


def gain(tuned: float, default: float, mode: str) -> float:
    """Improvement of the tuned score over the default's, positive when tuning helped."""
    return tuned - default if mode == "max" else default - tuned


def running_best(scores: list[float], mode: str) -> list[float]:
    return (np.maximum if mode == "max" else np.minimum).accumulate(scores).tolist()


@dataclass(frozen=True)
class PerArm:
    chosen: dict[str, dict[str, Any]]  # "fold{k}-{fusion}-{labels}" -> that search's best values
    outcome: Outcome


def tune_each_arm(settings: SweepSettings, prepared: Prepared, track: Tracking) -> PerArm:
    """Run every (arm, outer fold) search at once, in one Tune experiment; return each one's best values."""
    base = settings.base_config()
    metric = RunConfig.from_flat(base).select_metric
    mode = metric_mode(metric)
    studies, runs, done = [], {}, set()
    for fusion, labels in settings.arms:
        arm = C.arm_name(fusion, labels)
        space = load_space(fusion)
        for fold in settings.folds:
            run_id, finished = _search_run(track, arm, fold)
            if finished:
                done.add(run_id)
            else:
                _log_split(track, run_id, prepared.table, fold)
            fixed = {C.FUSION: fusion, C.LABELS: labels, C.FOLD: fold}
            study = Study.of(space, base, fixed, settings.tune_per_arm,
                             first=default_point(space, {**base, C.FUSION: fusion, C.LABELS: labels}))
            studies.append(study)
            runs[study.name] = run_id
    print(f"per-arm tuning: {len(studies)} searches × {settings.tune_per_arm} trials, run together")
    open_runs = [run_id for run_id in runs.values() if run_id not in done]
    try:
        searches = run_studies(settings, prepared, replace(track, sweep=track.sweep + SEARCH_SUFFIX), studies,
                               metric=metric, trainable=train_inner_split, parents=runs)
    except KeyboardInterrupt:
        _end_searches(track, open_runs, "KILLED")
        raise
    if searches.outcome.interrupted:
        _end_searches(track, open_runs, "KILLED")
        return PerArm({}, searches.outcome)
    chosen: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[list[float]]] = {}
    gains = []
    for study in studies:
        arm, fold = C.arm_name(study.fixed[C.FUSION], study.fixed[C.LABELS]), study.fixed[C.FOLD]
        result, run_id = searches.results[study.name], runs[study.name]
        if result.best:
            chosen[f"fold{fold}-{arm}"] = result.best
            curves.setdefault(arm, []).append(running_best(result.scores, mode))
            gains.append({"arm": arm, "fold": fold, "default": result.default, "tuned": result.score,
                          "gain": gain(result.score, result.default, mode)})
        if run_id not in done:  # not a rerun of a sweep whose searches had all finished
            _record_search(track, run_id, result, searches.searcher.trials_frame(study.name), metric)
    _log_summary(track, chosen, gains, curves, metric, mode, settings.tune_per_arm)
    return PerArm(chosen, searches.outcome)


def _record_search(track: Tracking, run_id: str, result: SearchResult, trials: Any, metric: str) -> None:
    """A finished search's run: its Optuna study as ``trials.csv``, its best config and scores, its status."""
    client = track.client
    client.log_text(run_id, trials.to_csv(index=False), C.SEARCH_TRIALS_FILE)
    if result.best:
        client.log_dict(run_id, result.best, C.SEARCH_BEST_FILE)
        client.log_metric(run_id, C.search_best(metric), result.score)
        client.log_metric(run_id, C.search_default(metric), result.default)
    _end_searches(track, [run_id], "FAILED" if result.failed or not result.best else "FINISHED")


def _end_searches(track: Tracking, run_ids: list[str], status: str) -> None:
    for run_id in run_ids:
        tracking.mark_orphans_killed(track.client, track.experiment_id, run_id)  # trials a killed driver lost
        track.client.set_terminated(run_id, status=status)


def _log_split(track: Tracking, run_id: str, table: FeatureTable, fold: int) -> None:
    """What the (arm, fold) search trains and scores on, as ``split.json`` on its run."""
    valid_fold, excluded = inner_split(fold)
    train, valid = table.split(valid_fold, exclude=excluded)
    track.client.log_dict(run_id, {"name": f"fold{fold}-inner{valid_fold}", "train": train.segment_id.tolist(),
                                   "valid": valid.segment_id.tolist()}, C.SPLIT_FILE)


def _log_summary(track: Tracking, chosen: dict, gains: list[dict], curves: dict, metric: str, mode: str,
                 budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.DataFrame(gains)
    summary = table.groupby("arm")[["default", "tuned", "gain"]].agg(["mean", "std"]).round(4)
    direction = "lower is better" if mode == "min" else "higher is better"
    print(f"\nPer-arm tuning ({budget} trials per arm and fold, inner split, {metric}, {direction}; "
          "gain > 0 = tuning helped):\n" + summary.to_string())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        (out / C.PER_ARM_CONFIGS_FILE).write_text(yaml.safe_dump(chosen, sort_keys=True))
        table.to_csv(out / C.PER_ARM_GAIN_FILE, index=False)
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for arm, runs in sorted(curves.items()):
            length = min(len(r) for r in runs)
            mean = np.mean([r[:length] for r in runs], axis=0)
            ax.plot(np.arange(1, length + 1), mean, marker="o", label=arm,
                    linestyle="-" if arm.startswith("outer") else "--")
        ax.set_xlabel("search trials spent (trial 1 = untuned defaults)")
        ax.set_ylabel(f"best inner-split {metric} so far ({direction}; mean over folds)")
        ax.set_title("Isolation plot: each arm's best score vs search budget")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / C.ISOLATION_PLOT, dpi=110)
        plt.close(fig)
        track.client.log_artifacts(track.parent_run_id, str(out), C.PER_ARM_DIR)
