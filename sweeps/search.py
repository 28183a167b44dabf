"""Hyper-parameter search: Optuna TPE (seeded) + ASHA over a YAML space, one search per arm, all at once.

Writes the best configuration as YAML that ``python sweeps/ablation.py --config FILE`` takes (one
``arms:`` entry per arm searched). Scientific parameters (fusion, labels) are fixed to each arm;
only nuisance parameters are searched. A trial's score is its mean over the validation folds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeps.cli import INTERRUPTED, exit_now, run_cli
from sweeps.settings import add_arguments, positive, select_metric_argument

# this script's own defaults: one fold and the paper's proposed arm (a search is per arm)
DEFAULTS = {"folds": [0], "fusions": ["outer"], "labels": ["peakl"]}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python sweeps/search.py", description=__doc__)
    search = parser.add_argument_group("search")
    search.add_argument("--space", help="search-space YAML (default: search_spaces/<fusion>.yaml for each arm)")
    search.add_argument("--num-samples", type=positive(int), default=20, help="trials per arm (default %(default)s)")
    select_metric_argument(search)
    search.add_argument("--grace-period", type=positive(int), default=3,
                        help="ASHA: epochs before a trial may stop (default %(default)s)")
    search.add_argument("--out", type=Path, help="where to write the best config (default: CACHE/search/<name>.yaml)")
    add_arguments(parser, script="search", defaults=DEFAULTS)
    args = parser.parse_args(argv)
    from sweeps.spaces import SpaceError, load_space  # optuna and the run config (torch): after parsing

    try:  # a malformed space fails before any work, as a usage error
        args.spaces = {fusion: load_space(args.space or fusion) for fusion in args.fusions}
    except SpaceError as err:
        parser.error(str(err))
    return args


def main(argv: list[str] | None = None) -> int:
    return run_cli(_search, parse_args(argv))


def _search(args: argparse.Namespace) -> int:
    from sweeps.cluster import start_ray, start_ray_early, stop_early_ray
    from sweeps.progress import quiet_startup
    from sweeps.settings import settings_from_args
    from sweeps.store import tracking_uri

    settings = settings_from_args(args, identity={"num_samples": args.num_samples, "metric": args.metric,
                                                  "space": {f: str(s.path) for f, s in args.spaces.items()}})
    quiet_startup(settings.verbose)
    tracking_uri(settings)
    start_ray_early(settings)  # comes up while torch loads
    # the libraries load here, once the arguments are good
    import yaml

    from erc import contract as C
    from sweeps.prepare import prepare
    from sweeps.runner import close_tracking, open_tracking
    from sweeps.search_run import run_studies
    from sweeps.studies import Study

    start_ray(settings)
    prepared = prepare(settings)
    sweep = settings.sweep_name(kind="search")
    track = open_tracking(settings, prepared, sweep, stage=C.SEARCH_STAGE)
    base = settings.base_config()
    # one study per arm, all in one Tune experiment; a trial scores the mean over the folds
    studies = [Study.of(args.spaces[fusion], base, {C.FUSION: fusion, C.LABELS: labels}, args.num_samples)
               for fusion, labels in settings.arms]
    searches = run_studies(settings, prepared, track, studies, metric=args.metric, grace_period=args.grace_period,
                           bound={"splits": [(fold, ()) for fold in settings.folds]})
    status = close_tracking(track, searches.outcome)
    stop_early_ray()  # what follows reads MLflow only
    if searches.outcome.interrupted:
        print(f"\nsearch {sweep}: {searches.outcome.summary()}, parent run {status}")
        print(INTERRUPTED, file=sys.stderr)
        return 130
    best = {}
    for study in studies:
        result = searches.results[study.name]
        print(f"{study.name}: best mean valid {args.metric} = {result.score:.4f} over folds {settings.folds}")
        if result.best:
            best[study.name] = result.best
    out = args.out or settings.cache_dir / "search" / f"{sweep}.yaml"
    header = (f"# Best configuration per arm of search {sweep!r}: mean valid {args.metric} over folds "
              f"{settings.folds}, {args.num_samples} samples per arm (Optuna TPE + ASHA, one study per arm).\n"
              f"# Use with: python sweeps/ablation.py --config {out}\n")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + yaml.safe_dump({"arms": best}, sort_keys=True))
    track.client.log_artifact(track.parent_run_id, str(out), artifact_path=C.BEST_CONFIG_DIR)
    print(f"\nsearch {sweep}: parent run {status}; config written to {out}:\n")
    print(out.read_text())
    return 0 if status == "FINISHED" else 1


if __name__ == "__main__":
    exit_now(main())
