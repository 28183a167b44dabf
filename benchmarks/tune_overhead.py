"""Sweep machinery overhead per trial: the 30-trial ablation grid with a trainer that does no work.

``--folds N`` runs the grid on N folds (N × 6 trials; default all 5).

Side by side in one run (this machine is shared and noisy, so only ratios/differences in one run
mean anything):
  sequential  a plain Python loop over the same 30 configs calling the same no-op trainer
  tune        our sweep path: Ray Tune (reuse_actors=True) + the MLflow callback on a SQLite store
  tune_default_actors  the same with Ray's default reuse_actors=False, for reference (``--no-reference``
                       leaves it out: a fresh trial process per trial is most of this benchmark's time)
  tune_one_fold        with two folds or more: our path again on one fold's 6 trials. The two grids differ
                       only in their number of trials, so their difference splits ``tune`` into what every
                       sweep pays once (``fixed_start_s``: the trial processes' start-up, Tune's set-up and
                       end) and what each further trial adds (``marginal_overhead_s_per_trial``). The one-fold
                       grid runs second, so the first run's one-time costs in this process count as
                       per-trial ones: the marginal figure errs high, not low.
Last line: a JSON object with overhead_s_per_trial, sequential_s, tune_s, the split above (null on one fold)
and the reference figure.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from erc.vocab import DEFAULT_FUSIONS, FOLDS, LABEL_ARMS, N_FOLDS

N_ROWS = 1000


def noop_work(config: dict, data: dict) -> dict:
    from erc import contract as C

    return {C.RESULT_EPOCH: 1, C.VALID_PREFIX + "acc": float(data.fold[:1].sum() * 0), C.SELECTED_PREFIX + "acc": 0.0}


def noop_trial(config: dict, data: dict, settings: dict) -> None:
    from ray import tune

    tune.report(noop_work(config, data))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folds", type=int, choices=range(1, N_FOLDS + 1), default=N_FOLDS,
                        help="folds of the grid (default %(default)s: the 30-trial grid)")
    parser.add_argument("--no-reference", action="store_true",
                        help="leave out the reuse_actors=False reference run (its figures are null)")
    args = parser.parse_args()
    import numpy as np
    import ray

    from erc import contract as C
    from erc.table import FeatureTable
    from sweeps.cluster import init_ray
    from sweeps.grid import grid_tuning
    from sweeps.naming import TrialLabels
    from sweeps.prepare import Prepared
    from sweeps.runner import open_tracking, run_tuner
    from sweeps.settings import SweepSettings

    work = Path(tempfile.mkdtemp(prefix="tune-overhead-"))
    zeros = np.zeros(N_ROWS)
    arrays = FeatureTable(segment_id=np.array([f"s{i}" for i in range(N_ROWS)]), corpus=np.full(N_ROWS, "none"),
                          session=zeros, fold=np.arange(N_ROWS) % 5, audio=np.zeros((N_ROWS, 64), np.float32),
                          text=np.zeros((N_ROWS, 64), np.float32), votes=np.zeros((N_ROWS, 7)), majority=zeros,
                          valence=zeros, arousal=zeros)
    prepared = Prepared(arrays, "none", "none", "none", work, None)

    folds = list(FOLDS[:args.folds])
    configs = [{C.FOLD: f, C.FUSION: fu, C.LABELS: lab} for f in folds for fu in DEFAULT_FUSIONS for lab in LABEL_ARMS]
    t0 = time.perf_counter()
    for config in configs:
        noop_work(config, arrays)
    sequential_s = time.perf_counter() - t0

    results: dict[str, float] = {}
    trials: dict[str, int] = {}
    init_ray(SweepSettings(cache_dir=work, verbose=0))  # a private Ray, as every sweep starts it
    try:
        runs = [("tune", True, folds)]
        if len(folds) > 1:
            runs.append(("tune_one_fold", True, folds[:1]))
        if not args.no_reference:
            runs.append(("tune_default_actors", False, folds))
        for label, reuse, run_folds in runs:
            settings = SweepSettings(cache_dir=work / label, experiment=f"overhead-{label}", name=label,
                                     verbose=0, max_failures=0, folds=run_folds)
            track = open_tracking(settings, prepared, label, stage=C.GRID_STAGE, parent_params={"bench": label})
            space, config = grid_tuning(settings)
            t0 = time.perf_counter()
            outcome = run_tuner(settings, prepared, track, noop_trial, space,
                                labels=TrialLabels(), tune_config=config,
                                reuse_actors=reuse)
            results[label] = time.perf_counter() - t0
            trials[label] = sum(c[C.FOLD] in run_folds for c in configs)
            assert outcome.finished == trials[label], outcome.summary()
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)  # its MLflow stores and Tune's files: nothing to keep

    reference = results.get("tune_default_actors")
    marginal = fixed = None
    if "tune_one_fold" in results:
        marginal = (results["tune"] - results["tune_one_fold"]) / (trials["tune"] - trials["tune_one_fold"])
        fixed = results["tune_one_fold"] - trials["tune_one_fold"] * marginal
    figures = {
        "overhead_s_per_trial": round((results["tune"] - sequential_s) / len(configs), 3),
        "marginal_overhead_s_per_trial": None if marginal is None else round(marginal, 3),
        "fixed_start_s": None if fixed is None else round(fixed, 2),
        "sequential_s": round(sequential_s, 3),
        "tune_s": round(results["tune"], 2),
        "tune_one_fold_s": None if "tune_one_fold" not in results else round(results["tune_one_fold"], 2),
        "tune_default_actors_s": None if reference is None else round(reference, 2),
        "default_actors_overhead_s_per_trial": None if reference is None else round(
            (reference - sequential_s) / len(configs), 3),
    }
    beside = "" if reference is None else f" | Ray default actors {reference:.1f} s"
    print(f"{len(configs)} no-op trials: sequential loop {sequential_s:.3f} s | our Tune path (reuse_actors, MLflow) "
          f"{results['tune']:.1f} s{beside}")
    beside = "" if reference is None else f" vs {figures['default_actors_overhead_s_per_trial']} s (Ray's default)"
    print(f"overhead per trial: {figures['overhead_s_per_trial']} s (reuse){beside}")
    if marginal is not None:
        print(f"of which once per sweep: {fixed:.2f} s (one fold's grid: {results['tune_one_fold']:.1f} s for "
              f"{trials['tune_one_fold']} trials); each further trial: {marginal:.3f} s")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
