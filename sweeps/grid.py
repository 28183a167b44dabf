"""The ablation grid: fold × fusion × labels (× seed) trials, then the paper's tables."""

from __future__ import annotations

import argparse
import itertools
import logging
import sys
from typing import Any

from ray import tune
from ray.tune.search.basic_variant import BasicVariantGenerator

from erc import contract as C
from erc.config import RunConfig
from erc.vocab import REPORTS_DIR
from sweeps.cli import INTERRUPTED
from sweeps.cluster import start_ray, stop_early_ray
from sweeps.finished import print_report, record_finished
from sweeps.naming import TrialLabels
from sweeps.per_arm import tune_each_arm
from sweeps.prepare import prepare
from sweeps.progress import header, quiet_startup
from sweeps.runner import close_tracking, open_tracking, run_tuner
from sweeps.settings import SweepSettings, settings_from_args
from sweeps.store import tracking_uri
from sweeps.trainable import train_trial

log = logging.getLogger(__name__)


def grid_trials(settings: SweepSettings) -> list[dict[str, Any]]:
    """Every grid trial's config: fold × fusion × labels (× seed), each with its arm's own values.

    In Tune's grid order (the fold varies fastest). Values: the sweep's, then the arm's (``--config``
    ``arms:``), then this fold's tuning of the arm (``--tune-per-arm``), most specific last. Every
    trial names every key some arm sets (its own value, else the one its run config resolves to).
    """
    base = settings.base_config()
    seeds = settings.seeds if settings.repeats > 1 else [settings.seed]
    per_arm_keys = sorted({k for values in settings.arm_hparams.values() for k in values})
    trials = []
    for seed, labels, fusion, fold in itertools.product(seeds, settings.labels, settings.fusions, settings.folds):
        arm, scientific = C.arm_name(fusion, labels), {C.FUSION: fusion, C.LABELS: labels}
        resolved = RunConfig.from_flat({**base, **scientific}).to_flat()
        trials.append({**base, **{k: resolved[k] for k in per_arm_keys}, **settings.arm_hparams.get(arm, {}),
                       **settings.arm_hparams.get(f"fold{fold}-{arm}", {}), **scientific, C.FOLD: fold, C.SEED: seed})
    return trials


def grid_tuning(settings: SweepSettings) -> tuple[dict[str, Any], tune.TuneConfig]:
    """The grid for Tune: its explicit list of trial configs (``points_to_evaluate``), run once each.

    The param space only declares each key with the values the trials give it, as Tune requires
    of preset points; with ``num_samples`` = the number of trials nothing else is sampled.
    """
    trials = grid_trials(settings)
    space = {}
    for key in trials[0]:
        values = list(dict.fromkeys(trial[key] for trial in trials))
        space[key] = values[0] if len(values) == 1 else tune.choice(values)
    # Tune ignores TuneConfig.max_concurrent_trials for a search_alg that is not a Searcher: the limit
    # belongs to the generator itself.
    generator = BasicVariantGenerator(points_to_evaluate=trials, max_concurrent=settings.max_concurrent or 0)
    return space, tune.TuneConfig(search_alg=generator, num_samples=len(trials))


def run_ablation(args: argparse.Namespace) -> int:
    # analysis at the end of a sweep only: importing the sweep layer never imports analysis
    from analysis.plots import peakl_figure

    settings = settings_from_args(args)
    quiet_startup(settings.verbose)
    tracking_uri(settings)  # fail fast, before the feature cache is built
    start_ray(settings)  # a dead --address or an impossible per-trial request fails here, before any work
    prepared = prepare(settings)
    sweep = settings.sweep_name()
    track = open_tracking(settings, prepared, sweep, stage=C.GRID_STAGE)
    # the parent run shows what PeakL does to this corpus's labels
    reports = settings.cache_dir / REPORTS_DIR / sweep
    figure = peakl_figure(prepared.table.votes, reports / C.PEAKL_PLOT, classes=prepared.table.classes)
    track.client.log_artifact(track.parent_run_id, str(figure), C.PLOTS_DIR)
    if settings.tune_per_arm:
        per_arm = tune_each_arm(settings, prepared, track)
        if per_arm.outcome.interrupted:
            close_tracking(track, per_arm.outcome)
            print(f"\nsweep {sweep}: the per-arm searches were interrupted.")
            print(INTERRUPTED, file=sys.stderr)
            return 130
        settings.arm_hparams = {**settings.arm_hparams, **per_arm.chosen}
    n = len(settings.folds) * len(settings.arms) * settings.repeats
    print(header(settings, prepared, track, n))
    space, tune_config = grid_tuning(settings)
    outcome = run_tuner(settings, prepared, track, train_trial, space, tune_config=tune_config,
                        labels=TrialLabels(with_seed=settings.repeats > 1))
    status = close_tracking(track, outcome)
    stop_early_ray()  # the report reads MLflow only: Ray shuts down meanwhile (when this run started it)
    print(f"\nsweep {sweep}: {outcome.summary()} → parent run {track.parent_run_id} {status}")
    if outcome.interrupted:  # no report: the tables of a partial sweep would pass for the result
        print(INTERRUPTED, file=sys.stderr)
        return 130
    report = print_report(settings, sweep, track.uri)
    if status == "FINISHED":  # every write to the store is done: its rerun may reprint this report
        record_finished(settings, sweep, track.uri, track.parent_run_id, report)
    if outcome.failed:
        print(f"{outcome.failed} trial(s) FAILED after {settings.max_failures} retries; see their MLflow runs "
              f"(tag {C.LAST_ERROR}, artifacts {C.ERRORS_DIR}/).")
        return 1
    return 0
