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

The tuned metric is the sweep's ``select_metric``, in its own direction (losses are minimised).
MLflow: grid parent → one ``role=search`` run per (arm, fold) → its search trials
(``stage=search``), so tools reading the grid can tell them apart.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from analysis import contract as C
from analysis.runs import search_all
from erc.config import RunConfig
from erc.data.folds import N_FOLDS
from erc.metrics import metric_mode
from sweeps.naming import TrialLabels
from sweeps.prepare import Prepared
from sweeps.runner import Tracking
from sweeps.search_run import run_search
from sweeps.settings import SweepSettings
from sweeps.spaces import SearchSpace, load_space
from sweeps.trainable import Split


def inner_split(outer: int) -> Split:
    """Validate on the fold after ``outer``; train on the other three; fold ``outer`` is left out."""
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


def _search_run(track: Tracking, arm: str, fold: int) -> str:
    """The (arm, fold) search's MLflow run under the grid parent: found again on a rerun, or created."""
    found = search_all(track.client, track.experiment_id,
                       C.tag_filter({C.SWEEP: track.sweep, C.ROLE: C.SEARCH_ROLE, C.ARM: arm, C.FOLD: fold}))
    if found:
        track.client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    return track.client.create_run(track.experiment_id, run_name=f"search {arm} fold{fold}", tags={
        **track.tags, C.PARENT_RUN_ID: track.parent_run_id, C.STAGE: C.SEARCH_STAGE, C.ROLE: C.SEARCH_ROLE,
        C.ARM: arm, C.FOLD: str(fold)}).info.run_id


def gain(tuned: float, default: float, mode: str) -> float:
    """Improvement of the tuned score over the default's, positive when tuning helped."""
    return tuned - default if mode == "max" else default - tuned


def running_best(scores: list[float], mode: str) -> list[float]:
    return (np.maximum if mode == "max" else np.minimum).accumulate(scores).tolist()


def tune_each_arm(settings: SweepSettings, prepared: Prepared, track: Tracking) -> dict[str, dict[str, Any]]:
    """Run every (arm, outer fold) search; return ``{"fold{k}-{fusion}-{labels}": best values}``."""
    base = settings.base_config()
    metric = RunConfig.from_flat(base).select_metric
    mode = metric_mode(metric)
    chosen: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[list[float]]] = {}
    gains = []
    for fusion, labels in settings.arms:
        arm = C.arm_name(fusion, labels)
        space = load_space(fusion)
        for fold in settings.folds:
            split = inner_split(fold)
            run_id = _search_run(track, arm, fold)
            train, valid = prepared.table.split(split[0], exclude=split[1])
            with tempfile.TemporaryDirectory() as tmp:  # what the search trained and scored on
                path = Path(tmp) / "split.json"
                path.write_text(json.dumps({"name": f"fold{fold}-inner{split[0]}", "train": train.segment_id.tolist(),
                                            "valid": valid.segment_id.tolist()}))
                track.client.log_artifact(run_id, str(path))
            sub = replace(track, parent_run_id=run_id, tags={**track.tags, C.STAGE: C.SEARCH_STAGE})
            fixed = {C.FUSION: fusion, C.LABELS: labels}
            result = run_search(
                settings, prepared, sub, space, fixed=fixed, splits=[split], num_samples=settings.tune_per_arm,
                metric=metric, labels=TrialLabels(stage=C.SEARCH_STAGE, prefix=f"{arm} fold{fold}",
                                                  extra_tags={C.FOLD: str(fold)}),
                sweep_suffix=f"-search-{arm}-fold{fold}",
                points_to_evaluate=[default_point(space, {**base, **fixed})])
            curves.setdefault(arm, []).append(running_best(result.scores, mode))
            default = result.default_score if result.default_score is not None else result.scores[0]
            gains.append({"arm": arm, "fold": fold, "default": default, "tuned": result.score,
                          "gain": gain(result.score, default, mode)})
            chosen[f"fold{fold}-{arm}"] = result.best
            track.client.log_dict(run_id, result.best, "best_config.yaml")
            track.client.log_metric(run_id, f"{C.SEARCH_PREFIX}best_{metric}", result.score)
            track.client.log_metric(run_id, f"{C.SEARCH_PREFIX}default_{metric}", default)
            track.client.set_terminated(run_id, status="FAILED" if result.outcome.failed else "FINISHED")
    _log_summary(track, chosen, gains, curves, metric, mode, settings.tune_per_arm)
    return chosen


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
        (out / "per_arm_configs.yaml").write_text(yaml.safe_dump(chosen, sort_keys=True))
        table.to_csv(out / "per_arm_gain.csv", index=False)
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
        fig.savefig(out / "isolation_plot.png", dpi=110)
        plt.close(fig)
        track.client.log_artifacts(track.parent_run_id, str(out), C.PER_ARM_DIR)
