"""Hyper-parameter search for one arm: OptunaSearch (TPE, seeded) + ASHA over a YAML space.

Writes the best configuration as YAML that ``python sweeps/ablation.py --config FILE`` takes.
Scientific parameters (fusion, labels) are fixed to one arm; only nuisance parameters are searched.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from sweeps.cluster import start_ray
from sweeps.prepare import prepare
from sweeps.runner import INTERRUPTED, close_tracking, open_tracking, run_cli, tracking_uri
from sweeps.search_run import fold_splits, run_search, write_best_config
from sweeps.settings import add_common_arguments, comma_list, settings_from_args
from sweeps.spaces import load_space


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python sweeps/search.py", description=__doc__)
    parser.add_argument("--fusion", choices=("concat", "outer"), default="outer")
    parser.add_argument("--labels", choices=("hard", "soft", "peakl"), default="peakl")
    parser.add_argument("--space", help="search-space YAML (default: search_spaces/<fusion>.yaml)")
    parser.add_argument("--num-samples", type=int, default=20, help="number of trials (default 20)")
    parser.add_argument("--folds", type=comma_list(int), default=[0],
                        help="validation folds; a trial's score is the mean over them (default 0)")
    parser.add_argument("--metric", default="acc", help="validation metric to optimise (default acc)")
    parser.add_argument("--mode", choices=("max", "min"), default="max")
    parser.add_argument("--grace-period", type=int, default=3, help="ASHA: epochs before a trial may stop")
    parser.add_argument("--out", type=Path, help="where to write the best config (default: CACHE/search/<name>.yaml)")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_search, parse_args(argv))


def _search(args: argparse.Namespace) -> int:
    space = load_space(args.space or args.fusion)  # a malformed space fails before any work
    settings = settings_from_args(args, folds=args.folds, fusions=[args.fusion], labels=[args.labels],
                                  hparams={"space": str(space.path), "num_samples": args.num_samples,
                                           "metric": args.metric})
    tracking_uri(settings)
    start_ray(settings)
    prepared = prepare(settings)
    sweep = settings.sweep_name(kind="search")
    track = open_tracking(settings, prepared, sweep, stage="search")
    splits = fold_splits(prepared.arrays["fold"], args.folds)
    tuned, outcome = run_search(settings, prepared, track, space,
                                scientific={"fusion": args.fusion, "labels": args.labels}, splits=splits,
                                num_samples=args.num_samples, metric=args.metric, mode=args.mode,
                                grace_period=args.grace_period)
    status = close_tracking(track, outcome)
    if outcome.interrupted:  # the best of a partial search is not the search's answer
        print(f"\nsearch {sweep}: {outcome.summary()}, parent run {status}")
        print(INTERRUPTED, file=sys.stderr)
        return 130
    out = args.out or settings.cache_dir / "search" / f"{sweep}.yaml"
    write_best_config(out, tuned, arm=f"{args.fusion}-{args.labels}", metric=args.metric, sweep=sweep,
                      num_samples=args.num_samples, folds=args.folds)
    track.client.log_artifact(track.parent_run_id, str(out), artifact_path="best")
    print(f"\nsearch {sweep}: {outcome.summary()}, parent run {status}")
    print(f"best mean valid {args.metric} = {tuned['_score']:.4f}; config written to {out}:\n")
    print(out.read_text())
    return 0 if status == "FINISHED" else 1


if __name__ == "__main__":
    sys.exit(main())
