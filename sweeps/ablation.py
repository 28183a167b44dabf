"""The main job: the fold × fusion × labels ablation grid as a Ray Tune sweep, logged to MLflow.

With no arguments: the built-in demo corpus and encoders, the 30-trial grid on this machine, a
local MLflow store, and the paper's paired t-test tables at the end. Rerunning the same command
resumes an interrupted sweep (finished trials are not rerun).
"""

from __future__ import annotations

import argparse
import sys

from erc.protocol import check_cached
from sweeps.grid import run_ablation
from sweeps.runner import run_cli
from sweeps.settings import FOLDS, add_common_arguments, check_layers, load_config_file, positive


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python sweeps/ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    grid = parser.add_argument_group("grid")
    grid.add_argument("--config", help="YAML of hyper-parameters (e.g. the file sweeps/search.py writes)")
    grid.add_argument("--repeats", type=positive(int), default=1,
                      help="run the grid with this many seeds (seed, seed+1, …)")
    grid.add_argument("--tune-per-arm", type=int, default=0, metavar="N",
                      help="first tune each arm's nuisance hyper-parameters with N Optuna trials on an inner "
                           "split of its training folds, then run the grid with each arm's own best values")
    add_common_arguments(parser, default_folds=list(FOLDS))
    args = parser.parse_args(argv)
    if args.tune_per_arm < 0:
        parser.error("--tune-per-arm must be >= 0")
    if args.config:
        try:
            args.hparams = load_config_file(args.config)
            check_layers(args.layers, args.hparams[0], args.hparams[1])
        except (OSError, TypeError, ValueError) as err:
            parser.error(f"--config: {err}")
        if args.mode == "cached":
            try:
                for values in [args.hparams[0], *args.hparams[1].values()]:
                    check_cached(values)
            except ValueError as err:
                parser.error(f"--config: {err} (add --mode finetune)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(run_ablation, args)


if __name__ == "__main__":
    sys.exit(main())
