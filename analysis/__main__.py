"""Command line: ``python -m analysis compare|report|embeddings`` over a sweep stored in MLflow, or
``compare|report --values-csv FILE`` over per-fold values from a CSV file.

Only the standard library and :mod:`analysis.options` (stdlib + ``erc.vocab``/``erc.contract``) load before
the arguments are parsed, so ``--help`` answers at once; pandas, pingouin, matplotlib, MLflow and torch load
in the command that needs them.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings

from analysis.options import (
    ALTERNATIVES,
    DEFAULT_METRICS,
    OUT_DIR,
    POSTHOC_METHODS,
    VALUES_CSV_HELP,
    Contrast,
    ReportOptions,
    UmapSettings,
)
from erc import contract as C

DEFAULTS = ReportOptions()
UMAP_DEFAULTS = UmapSettings()

EPILOG = f"""examples:
  python -m analysis report --experiment {DEFAULTS.experiment}
  python -m analysis compare --experiment {DEFAULTS.experiment} --factor fusion --treatment outer \\
      --baseline concat --where labels=peakl --metrics acc macro_f1 --rope 0.01
  python -m analysis compare --experiment my-runs --factor optimizer --treatment adam --baseline sgd \\
      --filter "params.lr = '0.001'"
  python -m analysis embeddings --experiment {DEFAULTS.experiment} --arm outer-peakl --fold 0
  python -m analysis report --values-csv analysis/data/paper_fold_values.csv   # the paper's own numbers
  python -m analysis compare --values-csv my_folds.csv --factor model --treatment ours --baseline theirs
Runs: a sweep's trials (--sweep; default the latest sweep), or every run of an experiment that has no
sweep (or with --all-runs / --filter). A run needs {C.MINIMAL_RUN}.
The tracking URI comes from --tracking-uri, else MLFLOW_TRACKING_URI, else MLflow's default.
--values-csv FILE reads no MLflow runs and logs nothing; the file has {VALUES_CSV_HELP}."""


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


def _metrics(items: list[str] | None) -> tuple[str, ...] | None:
    if not items:
        return None
    # Accept both "--metrics acc macro_f1" and "--metrics acc,macro_f1".
    names = [m.strip() for item in items for m in item.split(",") if m.strip()]
    for prefix in C.VALUE_PREFIXES.values():
        names = [m.removeprefix(prefix) for m in names]
    return tuple(names)


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--experiment", default=DEFAULTS.experiment, help="MLflow experiment name (default: %(default)s)"
    )
    runs = common.add_mutually_exclusive_group()
    runs.add_argument(
        "--sweep",
        default=None,
        help="sweep name (parent run tag 'sweep') or parent run id (any run holding nested runs); "
        "default: the latest sweep, or every run when the experiment has no sweep",
    )
    runs.add_argument(
        "--all-runs", action="store_true", help="every run of the experiment, ignoring sweeps"
    )
    common.add_argument(
        "--filter",
        dest="filter_string",
        default=None,
        metavar="MLFLOW_FILTER",
        help="only the runs matching this MLflow search filter, e.g. \"params.lr = '0.001'\" "
        "(without --sweep: across the whole experiment)",
    )
    common.add_argument(
        "--values-csv",
        default=None,
        metavar="FILE",
        help="per-fold values from this CSV file instead of MLflow runs (a paper's numbers, a spreadsheet): "
        "one row per run with a 'fold' column, factor columns and metric columns; nothing is logged",
    )
    common.add_argument(
        "--values",
        choices=list(C.VALUE_PREFIXES),
        default=DEFAULTS.values,
        help="which logged values: selected/<metric> (every metric at one chosen epoch; plain <metric> "
        "when a run has no selected/ keys) or best/<metric> (each metric's own best epoch, the paper's "
        "per-metric maxima: optimistic) (default: %(default)s)",
    )
    common.add_argument(
        "--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)"
    )
    common.add_argument(
        "--out", dest="out_dir", default=None, help=f"output directory (default: {OUT_DIR}/<sweep>/<command>)"
    )
    common.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help=f"metrics without the selected/ prefix (default: {' '.join(DEFAULT_METRICS)} where logged, "
        "else every metric the runs carry)",
    )
    common.add_argument(
        "--extended",
        action=argparse.BooleanOptionalAction,
        default=DEFAULTS.extended,
        help="add NB-corrected t-test, d_z, min detectable d_z, Wilcoxon and Holm columns (default: on)",
    )
    common.add_argument(
        "--rope",
        type=float,
        default=None,
        help="add the Bayesian correlated t-test (baycomp) with this region of practical equivalence",
    )
    common.add_argument("--alternative", choices=ALTERNATIVES, default=DEFAULTS.alternative)
    common.add_argument(
        "--control", default=DEFAULTS.control,
        help="with more than two fusions: the control arm of the post-hoc test and of the paired tables "
        "(default: %(default)s)",
    )
    common.add_argument(
        "--posthoc", choices=POSTHOC_METHODS, default=DEFAULTS.posthoc,
        help="with more than two fusions, after the Friedman test: holm (each fusion against --control, "
        "Holm-corrected) or nemenyi (all pairs) (default: %(default)s)",
    )
    common.add_argument(
        "--no-log", dest="log_to_mlflow", action="store_false",
        help="do not log the files to MLflow (the sweep's parent run; without one, a run tagged role=analysis)"
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
    cmp_.add_argument("--factor", required=True,
                      help="the compared tag or param: fusion, labels, arm, or any name the runs carry")
    cmp_.add_argument("--treatment", required=True, help="treatment value of the factor, e.g. outer")
    cmp_.add_argument("--baseline", required=True, help="baseline value of the factor, e.g. concat")
    cmp_.add_argument(
        "--where",
        action="append",
        default=None,
        metavar="KEY=VALUE",
        help="fix another factor (tag or param), e.g. labels=peakl (repeatable)",
    )
    sub.add_parser(
        "report",
        parents=[common],
        help="the paper's tables and per-arm mean ± sd, as Markdown and one HTML page",
        description="fusion: outer vs concat (labels=peakl); labels: peakl vs soft and peakl vs hard "
        "(fusion=outer), each as the paper's 8-column table, the corrections and a sentence in plain words; "
        "per-arm mean ± sd. Writes report.md and a self-contained report.html.",
    )
    _add_embeddings_parser(sub)
    return parser


def _add_embeddings_parser(sub) -> None:
    emb = sub.add_parser(
        "embeddings",
        help="the seed's embedding figure for one trial: UMAP of the head's embeddings beside the ratings",
        description="Load one trial's saved head (checkpoint/head.pt) and feature cache, embed its fold's "
        "validation utterances and draw (left) their human valence/arousal ratings and (right) a seeded UMAP "
        "of the learned embeddings, coloured by majority emotion. Prints the alignment numbers (silhouettes, "
        "centroid-distance Spearman) and logs them (embed/*) and the PNG (plots/embeddings.png) to the run.",
    )
    emb.add_argument("--experiment", default=DEFAULTS.experiment, help="MLflow experiment name (default: %(default)s)")
    emb.add_argument("--sweep", default=None, help="sweep name or parent run id; default: the latest parent run")
    emb.add_argument("--arm", required=True, help="the trial's arm tag, e.g. outer-peakl")
    emb.add_argument("--fold", type=int, required=True, help="the trial's validation fold")
    emb.add_argument("--seed", default=None, help="the trial's seed tag (needed when the sweep has repeats)")
    emb.add_argument("--features", default=None, help="feature cache directory (default: the run's 'features' tag)")
    emb.add_argument("--out", default=None, help=f"output directory (default: {OUT_DIR}/<sweep>/embeddings/<run>)")
    emb.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: MLFLOW_TRACKING_URI)")
    emb.add_argument("--n-neighbors", type=int, default=UMAP_DEFAULTS.n_neighbors,
                     help="UMAP n_neighbors (default: %(default)s)")
    emb.add_argument("--min-dist", type=float, default=UMAP_DEFAULTS.min_dist,
                     help="UMAP min_dist (default: %(default)s)")
    emb.add_argument("--umap-seed", type=int, default=UMAP_DEFAULTS.random_state,
                     help="UMAP random_state (default: %(default)s)")
    emb.add_argument("--no-log", dest="log", action="store_false", help="do not log the figure and numbers")


def _embeddings(args: argparse.Namespace) -> int:
    from mlflow.exceptions import MlflowException

    from analysis.embeddings import run_embeddings

    try:
        run_embeddings(
            args.experiment,
            args.arm,
            args.fold,
            sweep=args.sweep,
            seed=args.seed,
            features=args.features,
            out_dir=args.out,
            tracking_uri=args.tracking_uri,
            log_to_mlflow=args.log,
            umap=UmapSettings(n_neighbors=args.n_neighbors, min_dist=args.min_dist, random_state=args.umap_seed),
        )
    except (ValueError, MlflowException) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


# The flag of each run-selecting option, for the --values-csv usage error.
_FLAGS = {"sweep": "--sweep", "all_runs": "--all-runs", "filter_string": "--filter", "values": "--values"}


def report_options(args: argparse.Namespace) -> ReportOptions:
    """The parsed arguments as :class:`ReportOptions` (the parser's dests are its field names)."""
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(ReportOptions) if hasattr(args, f.name)}
    given["metrics"] = _metrics(args.metrics)
    return ReportOptions(**given)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "embeddings":
        return _embeddings(args)
    options = report_options(args)
    clash = options.clashes_with_values_csv()
    if clash:
        parser.error(f"--values-csv reads a file, not MLflow runs: drop {', '.join(_FLAGS[c] for c in clash)}")
    from mlflow.exceptions import MlflowException

    from analysis.report import compare_report, sweep_report

    try:
        if args.command == "compare":
            contrast = Contrast(factor=args.factor, treatment=args.treatment, baseline=args.baseline,
                                where=_where(args.where))
            compare_report(contrast, options)
        else:
            sweep_report(options)
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
