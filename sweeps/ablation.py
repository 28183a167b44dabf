"""The main job: the fold × fusion × labels ablation grid as a Ray Tune sweep, logged to MLflow.

With no arguments: the built-in demo corpus and encoders, the 30-trial grid on this machine, a
local MLflow store, and the paper's paired t-test tables at the end. Rerunning the same command
resumes an interrupted sweep (finished trials are not rerun).
"""

from __future__ import annotations

import argparse

from sweeps.cli import exit_now, run_cli
from sweeps.settings import add_arguments, control_error


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The flags of :class:`sweeps.settings.SweepSettings` plus ``--config`` (→ ``hparams``, ``arm_hparams``)."""
    parser = argparse.ArgumentParser(prog="python sweeps/ablation.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    groups = add_arguments(parser, script="ablation")
    groups["grid"].add_argument("--config", help="YAML of hyper-parameters (e.g. the file sweeps/search.py writes)")
    args = parser.parse_args(argv)
    if error := control_error(args.fusions, args.control):
        parser.error(error)
    if args.config:  # checked against the run config: only now does it load (torch)
        from erc.protocol import check_cached
        from sweeps.settings import check_layers, load_config_file

        try:
            args.hparams, args.arm_hparams = load_config_file(args.config)
            check_layers(args.layers, args.hparams, args.arm_hparams)
        except (OSError, TypeError, ValueError) as err:
            parser.error(f"--config: {err}")
        if args.mode == "cached":
            try:
                for values in [args.hparams, *args.arm_hparams.values()]:
                    check_cached(values)
            except ValueError as err:
                parser.error(f"--config: {err} (add --mode finetune)")
    return args


def _ablation(args: argparse.Namespace) -> int:
    from sweeps.finished import rerun_finished  # MLflow only: a finished sweep's rerun starts no Ray
    from sweeps.settings import settings_from_args

    settings = settings_from_args(args)
    done = rerun_finished(settings)
    if done is not None:
        return done
    from sweeps.cluster import start_ray_early
    from sweeps.progress import quiet_startup

    quiet_startup(settings.verbose)  # before Ray starts: its workers inherit the environment
    start_ray_early(settings)  # comes up while torch loads and the corpus is read
    from sweeps.grid import run_ablation  # torch loads here, once the arguments are good

    return run_ablation(args)


def main(argv: list[str] | None = None) -> int:
    return run_cli(_ablation, parse_args(argv))


if __name__ == "__main__":
    exit_now(main())
