"""The ablation grid: fold × fusion × labels (× seed) trials, then the paper's tables."""

from __future__ import annotations

import argparse
import logging
import warnings
from typing import Any

from ray import tune

from analysis import contract as C
from analysis.plots import peakl_figure
from analysis.report import sweep_report
from erc.config import defaults
from sweeps.naming import TrialLabels
from sweeps.per_arm import tune_each_arm
from sweeps.prepare import prepare
from sweeps.progress import header, quiet_startup
from sweeps.runner import close_tracking, open_tracking, run_tuner, tracking_uri
from sweeps.settings import SweepSettings, settings_from_args
from sweeps.trainable import train_trial

log = logging.getLogger(__name__)


def param_space(settings: SweepSettings) -> dict[str, Any]:
    """Grid over the scientific factors and folds; the other run-config values fixed, or per arm."""
    space: dict[str, Any] = {
        **settings.base_config(),
        C.FOLD: tune.grid_search(settings.folds),
        C.FUSION: tune.grid_search(settings.fusions),
        C.LABELS: tune.grid_search(settings.labels),
        C.SEED: tune.grid_search(settings.seeds) if settings.repeats > 1 else settings.seed,
    }
    per_arm_keys = sorted({k for values in settings.arm_hparams.values() for k in values})
    for key in per_arm_keys:
        # sample_from resolves after the grid, so each trial picks its own arm's value
        space[key] = tune.sample_from(_ArmValue(key, settings.arm_hparams, space.get(key, defaults()[key])))
    return space


class _ArmValue:
    """Picklable ``sample_from`` function: an arm's own value of one run-config key."""

    def __init__(self, key: str, arm_hparams: dict, default: Any) -> None:
        self.key, self.arm_hparams, self.default = key, arm_hparams, default

    def __call__(self, spec: Any) -> Any:
        arm = C.arm_name(spec.config.fusion, spec.config.labels)
        # most specific first: this fold's tuning of the arm (--tune-per-arm), then the arm's own value
        for source in (self.arm_hparams.get(f"fold{spec.config.fold}-{arm}", {}), self.arm_hparams.get(arm, {})):
            if self.key in source:
                return source[self.key]
        return self.default


def run_ablation(args: argparse.Namespace) -> int:
    hparams, arm_hparams = getattr(args, "hparams", None) or ({}, {})
    settings = settings_from_args(args, hparams=hparams, arm_hparams=arm_hparams, repeats=args.repeats,
                                  tune_per_arm=args.tune_per_arm)
    quiet_startup(settings.verbose)
    tracking_uri(settings)  # fail fast, before the feature cache is built
    prepared = prepare(settings)
    sweep = settings.sweep_name()
    track = open_tracking(settings, prepared, sweep, stage=C.GRID_STAGE)
    # the parent run shows what PeakL does to this corpus's labels
    figure = peakl_figure(prepared.table.votes, settings.cache_dir / "reports" / sweep / "peakl_labels.png")
    track.client.log_artifact(track.parent_run_id, str(figure), C.PLOTS_DIR)
    if settings.tune_per_arm:
        settings.arm_hparams = tune_each_arm(settings, prepared, track)
    n = len(settings.folds) * len(settings.arms) * settings.repeats
    print(header(settings, prepared, track, n))
    outcome = run_tuner(settings, prepared, track, train_trial, param_space(settings),
                        labels=TrialLabels(with_seed=settings.repeats > 1))
    status = close_tracking(track, outcome)
    print(f"\nsweep {sweep}: {dict(outcome.statuses)} → parent run {track.parent_run_id} {status}")
    reports = settings.cache_dir / "reports" / sweep
    with warnings.catch_warnings():  # everything the report warns about is in its text, printed below
        warnings.simplefilter("ignore")
        sweep_report(settings.experiment, sweep=sweep, tracking_uri=track.uri, out_dir=reports)
        if settings.protocol == "paper":  # the paper's tables: each metric's own best epoch (labelled optimistic)
            sweep_report(settings.experiment, sweep=sweep, tracking_uri=track.uri, out_dir=reports, values="best")
    if track.uri.startswith(("http://", "https://")):
        print(f"\nBrowse the runs: {track.uri}")
    else:
        print(f"\nBrowse the runs: mlflow ui --backend-store-uri {track.uri}")
    if outcome.interrupted:
        print("The sweep was interrupted: rerun the same command to resume it.")
        return 130
    if outcome.failed:
        print(f"{outcome.failed} trial(s) FAILED after {settings.max_failures} retries; see their MLflow runs "
              f"(tag {C.LAST_ERROR}, artifacts {C.ERRORS_DIR}/).")
        return 1
    return 0
