"""The ablation grid: fold × fusion × labels (× seed) trials, then the paper's tables."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ray import tune

from sweeps.cluster import start_ray
from sweeps.prepare import prepare
from sweeps.runner import INTERRUPTED, close_tracking, open_tracking, run_tuner, tracking_uri
from sweeps.settings import SweepSettings, load_config_file, settings_from_args
from sweeps.trainable import train_trial, trial_name

log = logging.getLogger(__name__)


def param_space(settings: SweepSettings) -> dict[str, Any]:
    """Grid over the scientific factors and folds; hyper-parameters fixed, or per arm."""
    space: dict[str, Any] = {
        "fold": tune.grid_search(settings.folds),
        "fusion": tune.grid_search(settings.fusions),
        "labels": tune.grid_search(settings.labels),
        "seed": tune.grid_search(settings.seeds) if settings.repeats > 1 else settings.seed,
    }
    if settings.epochs is not None:
        space["epochs"] = settings.epochs
    space.update(settings.hparams)
    per_arm_keys = sorted({k for values in settings.arm_hparams.values() for k in values})
    for key in per_arm_keys:
        # sample_from resolves after the grid, so each trial picks its own arm's value
        space[key] = tune.sample_from(_ArmValue(key, settings.arm_hparams, settings.hparams))
    return space


class _ArmValue:
    """Picklable ``sample_from`` function: an arm's own value of one hyper-parameter."""

    def __init__(self, key: str, arm_hparams: dict, default: dict) -> None:
        self.key, self.arm_hparams, self.default = key, arm_hparams, default

    def __call__(self, spec: Any) -> Any:
        from erc.train import DEFAULT_CONFIG

        arm = f"{spec.config.fusion}-{spec.config.labels}"
        # most specific first: this fold's tuning of the arm (--tune-per-arm), the arm, every arm
        for source in (self.arm_hparams.get(f"fold{spec.config.fold}-{arm}", {}), self.arm_hparams.get(arm, {}),
                       self.default):
            if self.key in source:
                return source[self.key]
        return DEFAULT_CONFIG[self.key]


def trial_tags(with_seed: bool):
    def tags(config: dict) -> dict[str, str]:
        return {"stage": "grid", "fold": str(config["fold"]), "fusion": config["fusion"], "labels": config["labels"],
                "arm": f"{config['fusion']}-{config['labels']}", "seed": str(config["seed"])}

    return tags


class _RunName:
    def __init__(self, with_seed: bool) -> None:
        self.with_seed = with_seed

    def __call__(self, config: dict) -> str:
        return trial_name(config, self.with_seed)


def run_ablation(args: argparse.Namespace) -> int:
    hparams, arm_hparams = load_config_file(args.config) if args.config else ({}, {})
    settings = settings_from_args(args, folds=args.folds, fusions=args.fusions, labels=args.labels,
                                  hparams=hparams, arm_hparams=arm_hparams, repeats=args.repeats,
                                  tune_per_arm=args.tune_per_arm)
    settings.hparams.setdefault("preset", args.preset or ("demo" if settings.data is None else "paper"))
    tracking_uri(settings)  # fail fast, before the feature cache is built
    start_ray(settings)  # a dead --address or an impossible per-trial request fails here, before any work
    prepared = prepare(settings)
    sweep = settings.sweep_name()
    track = open_tracking(settings, prepared, sweep, stage="grid")
    try:  # the parent run shows what PeakL does to this corpus's labels
        from analysis.plots import peakl_figure

        figure = peakl_figure(prepared.arrays["votes"], settings.cache_dir / "reports" / sweep / "peakl_labels.png")
        track.client.log_artifact(track.parent_run_id, str(figure), "plots")
    except ImportError:  # the analysis package is optional at this layer
        pass
    if settings.tune_per_arm:
        from sweeps.per_arm import tune_each_arm

        try:
            settings.arm_hparams = tune_each_arm(settings, prepared, track)
        except KeyboardInterrupt:  # a search was interrupted: the sweep stops there, resumable
            close_tracking(track, None)
            raise
    n = len(settings.folds) * len(settings.arms) * settings.repeats
    print(f"sweep {sweep}: {n} trials → MLflow {track.uri} (experiment {settings.experiment!r})")
    outcome = run_tuner(settings, prepared, track, train_trial, param_space(settings),
                        run_name=_RunName(settings.repeats > 1), trial_tags=trial_tags(settings.repeats > 1))
    status = close_tracking(track, outcome)
    print(f"\nsweep {sweep}: {outcome.summary()} → parent run {track.parent_run_id} {status}")
    if outcome.interrupted:  # no report: the tables of a partial sweep would pass for the result
        print(INTERRUPTED, file=sys.stderr)
        return 130
    try:
        from analysis.report import sweep_report

        sweep_report(settings.experiment, sweep=sweep, tracking_uri=track.uri,
                     out_dir=settings.cache_dir / "reports" / sweep)
    except ImportError:  # the analysis package is optional at this layer
        print(outcome.results.get_dataframe().filter(regex="config/|selected/").to_string())
    if track.uri.startswith(("http://", "https://")):
        print(f"\nBrowse the runs: {track.uri}")
    else:
        print(f"\nBrowse the runs: mlflow ui --backend-store-uri {track.uri}")
    if outcome.failed:
        print(f"{outcome.failed} trial(s) FAILED after {settings.max_failures} retries; see their MLflow runs "
              "(tag last_error, artifacts errors/).")
        return 1
    return 0
