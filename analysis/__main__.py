"""Command line: ``python -m analysis compare|report`` over a sweep stored in MLflow."""

from __future__ import annotations

import argparse
import sys
import warnings

EPILOG = """examples:
  python -m analysis report --experiment erc-sweeps
  python -m analysis compare --experiment erc-sweeps --factor fusion --treatment outer \\
      --baseline concat --where labels=peakl --metrics acc macro_f1 --rope 0.01
The tracking URI comes from --tracking-uri, else MLFLOW_TRACKING_URI, else MLflow's default."""


# Repeated from analysis.runs so that --help does not import MLflow (seconds on a busy laptop).
DEFAULT_METRICS = ["acc", "macro_f1", "micro_f1", "ccc_arousal", "ccc_valence"]


def _where(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        for part in item.split(","):
            if not part.strip():
                continue
            key, sep, value = part.partition("=")
            if not sep or not key.strip() or not value.strip():
                raise argparse.ArgumentTypeError(f"--where expects KEY=VALUE, got {part!r}")
            out[key.strip()] = value.strip()
    return out


def _metrics(items: list[str] | None) -> list[str] | None:
    if not items:
        return None
    # Accept both "--metrics acc macro_f1" and "--metrics acc,macro_f1".
    return [m.strip().removeprefix("selected/") for item in items for m in item.split(",") if m.strip()]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--experiment", default="erc-sweeps", help="MLflow experiment name (default: %(default)s)"
    )
    common.add_argument(
        "--sweep",
        default=None,
        help="sweep name (parent run tag 'sweep') or parent run id; default: the latest parent run",
    )
    common.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)"
    )
    common.add_argument(
        "--out", default=None, help="output directory (default: analysis_out/<sweep>/<command>)"
    )
    common.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help=f"metrics without the selected/ prefix (default: {' '.join(DEFAULT_METRICS)})",
    )
    common.add_argument(
        "--extended",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add NB-corrected t-test, d_z, min detectable d_z, Wilcoxon and Holm columns (default: on)",
    )
    common.add_argument(
        "--rope",
        type=float,
        default=None,
        help="add the Bayesian correlated t-test (baycomp) with this region of practical equivalence",
    )
    common.add_argument("--alternative", choices=["two-sided", "greater", "less"], default="two-sided")
    common.add_argument(
        "--no-log", dest="log", action="store_false", help="do not log the files to the sweep's parent run"
    )

    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Fold-paired t-test tables (the paper's, plus corrected tests) from a sweep in MLflow.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    cmp_ = sub.add_parser(
        "compare",
        parents=[common],
        help="one table: treatment vs baseline of one factor",
        description="Pair two arms fold by fold and print the t-test table; write and log CSV, LaTeX, "
        "Markdown and a PNG of the fold-paired values.",
    )
    cmp_.add_argument("--factor", required=True, help="the compared tag: fusion, labels or arm")
    cmp_.add_argument("--treatment", required=True, help="treatment value of the factor, e.g. outer")
    cmp_.add_argument("--baseline", required=True, help="baseline value of the factor, e.g. concat")
    cmp_.add_argument(
        "--where",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="fix another factor, e.g. labels=peakl (repeatable)",
    )
    sub.add_parser(
        "report",
        parents=[common],
        help="the paper's two tables and per-arm mean ± sd",
        description="fusion: outer vs concat (labels=peakl); labels: peakl vs soft (fusion=outer); "
        "per-arm mean ± sd of every metric.",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from mlflow.exceptions import MlflowException

    from analysis.report import compare_report, sweep_report

    try:
        if args.command == "compare":
            compare_report(
                args.experiment,
                args.factor,
                args.treatment,
                args.baseline,
                where=_where(args.where),
                sweep=args.sweep,
                tracking_uri=args.tracking_uri,
                out_dir=args.out,
                log_to_mlflow=args.log,
                metrics=_metrics(args.metrics),
                extended=args.extended,
                rope=args.rope,
                alternative=args.alternative,
            )
        else:
            sweep_report(
                args.experiment,
                sweep=args.sweep,
                tracking_uri=args.tracking_uri,
                out_dir=args.out,
                log_to_mlflow=args.log,
                extended=args.extended,
                rope=args.rope,
                metrics=_metrics(args.metrics),
                alternative=args.alternative,
            )
    except (ValueError, argparse.ArgumentTypeError, MlflowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


def _one_line_warning(message, category, filename, lineno, line=None) -> str:
    return f"warning: {message}\n"


if __name__ == "__main__":
    # One line per warning ("warning: ignored 2 runs ..."), not Python's file:line dump. Set here, not
    # in main(), so that calling main() in-process leaves the caller's warning format alone.
    warnings.formatwarning = _one_line_warning
    sys.exit(main())
