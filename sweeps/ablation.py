"""The main job: the fold × fusion × labels ablation grid as a Ray Tune sweep, logged to MLflow.

With no arguments: the built-in demo corpus and encoders, the 30-trial grid on this machine, a
local MLflow store, and the paper's paired t-test tables at the end. Rerunning the same command
resumes an interrupted sweep (finished trials are not rerun).
"""

from __future__ import annotations

import argparse
import sys

from sweeps.grid import run_ablation
from sweeps.runner import run_cli
from sweeps.settings import FOLDS, FUSIONS, LABELS, add_common_arguments, comma_list


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python sweeps/ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    grid = parser.add_argument_group("grid")
    grid.add_argument("--folds", type=comma_list(int), default=list(FOLDS), help="e.g. 0,1 (default 0,1,2,3,4)")
    grid.add_argument("--fusions", type=comma_list(str), default=list(FUSIONS), help="concat,outer")
    grid.add_argument("--labels", type=comma_list(str), default=list(LABELS), help="hard,soft,peakl")
    grid.add_argument("--config", help="YAML of hyper-parameters (e.g. the file sweeps/search.py writes)")
    grid.add_argument("--preset", choices=("demo", "paper"), default=None,
                      help="head sizes (default: demo on the demo corpus, paper with --data)")
    grid.add_argument("--repeats", type=int, default=1, help="run the grid with this many seeds (seed, seed+1, …)")
    grid.add_argument("--tune-per-arm", type=int, default=0, metavar="N",
                      help="first tune each arm's nuisance hyper-parameters with N Optuna trials on an inner "
                           "split of its training folds, then run the grid with each arm's own best values")
    add_common_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_cli(run_ablation, args)


if __name__ == "__main__":
    sys.exit(main())
