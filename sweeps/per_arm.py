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

MLflow: grid parent → one ``stage=search`` run per (arm, fold) → its search trials (also
``stage=search``), so tools reading the grid can tell them apart.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from sweeps.prepare import Prepared
from sweeps.runner import Tracking
from sweeps.search_run import run_search
from sweeps.settings import SweepSettings
from sweeps.spaces import SearchSpace, load_space
from sweeps.tracking import find_runs

N_FOLDS = 5


def inner_split(folds_of_rows: np.ndarray, outer: int) -> tuple[str, np.ndarray, np.ndarray]:
    """Train on three training fold groups, score on the fourth; fold ``outer`` is left out."""
    inner = (outer + 1) % N_FOLDS
    rows = np.arange(len(folds_of_rows))
    train = rows[(folds_of_rows != outer) & (folds_of_rows != inner)]
    return f"fold{outer}-inner{inner}", train, rows[folds_of_rows == inner]


def default_point(space: SearchSpace, fusion: str, preset: str) -> dict[str, Any]:
    """The untuned configuration, placed inside the space, to be evaluated first."""
    from erc.train import resolve_config

    defaults = resolve_config({"fusion": fusion, "preset": preset})
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
    found = find_runs(track.client, track.experiment_id, sweep=track.sweep, role="search", arm=arm, fold=str(fold))
    if found:
        track.client.update_run(found[0].info.run_id, status="RUNNING")
        return found[0].info.run_id
    return track.client.create_run(track.experiment_id, run_name=f"search {arm} fold{fold}", tags={
        **track.tags, "mlflow.parentRunId": track.parent_run_id, "stage": "search", "role": "search",
        "arm": arm, "fold": str(fold)}).info.run_id


def tune_each_arm(settings: SweepSettings, prepared: Prepared, track: Tracking) -> dict[str, dict[str, Any]]:
    """Run every (arm, outer fold) search; return ``{"fold{k}-{fusion}-{labels}": best values}``."""
    preset = settings.hparams.get("preset", "demo")
    metric = settings.hparams.get("select_metric", "acc")
    chosen: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[list[float]]] = {}
    gains = []
    for fusion, labels in settings.arms:
        arm = f"{fusion}-{labels}"
        space = load_space(fusion)
        for fold in settings.folds:
            split = inner_split(prepared.arrays["fold"], fold)
            run_id = _search_run(track, arm, fold)
            with tempfile.TemporaryDirectory() as tmp:  # what the search trained and scored on
                ids = prepared.arrays["segment_id"]
                path = Path(tmp) / "split.json"
                path.write_text(json.dumps({"name": split[0], "train": ids[split[1]].tolist(),
                                            "valid": ids[split[2]].tolist()}))
                track.client.log_artifact(run_id, str(path))
            sub = Tracking(track.client, track.uri, track.experiment_id, run_id, track.sweep,
                           {**track.tags, "stage": "search"})
            fixed = {k: v for k, v in settings.hparams.items() if k not in space.params}
            tuned, outcome = run_search(
                settings, prepared, sub, space, scientific={"fusion": fusion, "labels": labels, **fixed},
                splits=[split], num_samples=settings.tune_per_arm, metric=metric, mode="max",
                run_prefix=f"{arm} fold{fold}", extra_tags={"fold": str(fold)},
                sweep_suffix=f"-search-{arm}-fold{fold}",
                points_to_evaluate=[default_point(space, fusion, preset)])
            if outcome.interrupted:
                track.client.set_terminated(run_id, status="KILLED")
                print(f"search {arm} fold{fold}: {outcome.summary()}")
                raise KeyboardInterrupt
            scores = _scores_in_order(outcome)
            curves.setdefault(arm, []).append(np.maximum.accumulate(scores).tolist())
            gains.append({"arm": arm, "fold": fold, "default": scores[0], "tuned": tuned["_score"],
                          "gain": tuned["_score"] - scores[0]})
            values = {k: (v.item() if hasattr(v, "item") else v) for k, v in tuned.items() if not k.startswith("_")}
            chosen[f"fold{fold}-{arm}"] = values
            track.client.log_dict(run_id, values, "best_config.yaml")
            track.client.log_metric(run_id, f"search/best_{metric}", tuned["_score"])
            track.client.log_metric(run_id, f"search/default_{metric}", scores[0])
            track.client.set_terminated(run_id, status="FAILED" if outcome.failed else "FINISHED")
    _log_summary(track, chosen, gains, curves, metric, settings.tune_per_arm)
    return chosen


def _scores_in_order(outcome: Any) -> list[float]:
    """Each search trial's final score, in the order the trials were created."""
    frame = outcome.results.get_dataframe().sort_values("trial_id")
    return [float(s) for s in frame["score"].fillna(float("-inf"))]


def _log_summary(track: Tracking, chosen: dict, gains: list[dict], curves: dict, metric: str, budget: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    table = pd.DataFrame(gains)
    summary = table.groupby("arm")[["default", "tuned", "gain"]].agg(["mean", "std"]).round(4)
    print(f"\nPer-arm tuning ({budget} trials per arm and fold, inner split, {metric}):\n"
          + summary.to_string())
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
        ax.set_ylabel(f"best inner-split {metric} so far (mean over folds)")
        ax.set_title("Isolation plot: each arm's best score vs search budget")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "isolation_plot.png", dpi=110)
        plt.close(fig)
        track.client.log_artifacts(track.parent_run_id, str(out), "per_arm_tuning")
