"""The numbers of a report: one comparison's fold-paired table (:func:`compare_table`) and the per-arm
mean ± sd over folds (:func:`arm_summary`)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from analysis.folds import sorted_keys
from analysis.options import METRIC_ORDER, Contrast, ReportOptions
from analysis.pairing import Comparison, pair
from analysis.stats import SEED_COLUMNS, nb_ratio, paired_table
from analysis.trials import SIZE_COLUMNS, Trials
from erc import contract as C
from erc import vocab

# What the per-arm table shows: the metrics a reader compares, in the paper's order (losses, epochs and
# the like stay in arms.csv).
ARM_TABLE_METRICS = [m for m in METRIC_ORDER if m in vocab.METRIC_KEYS]
RUNS_COLUMN = "runs"  # the per-arm table's count of runs
# the per-arm table's size columns: trainable parameters, forward FLOPs per utterance (means over runs)
SIZE_LABELS = {C.MODEL_PARAMS: "params", C.MODEL_FLOPS: "FLOPs"}


@dataclass
class TableResult:
    comparison: Comparison
    table: pd.DataFrame
    ratio: float | None  # n_test / n_train used by the NB correction
    n_pairs: int
    keys: list
    notes: list[str] = field(default_factory=list)
    values: str = C.DEFAULT_VALUES


def compare_table(trials: Trials, contrast: Contrast, options: ReportOptions | None = None) -> TableResult:
    """Pair the contrast's two arms and compute ``paired_table`` with the options' metrics and tests."""
    options = options or ReportOptions()
    comp = pair(trials, contrast, list(options.metrics) if options.metrics else None)
    table = paired_table(
        comp.treatment_values,
        comp.baseline_values,
        options.alternative,
        extended=options.extended,
        n_train=comp.n_train,
        n_test=comp.n_test,
        rope=options.rope,
        runs=comp.runs,
    )
    first = next(iter(comp.treatment_values.values()))
    keys = sorted_keys(first)
    ratio = nb_ratio(comp.n_train, comp.n_test, keys) if comp.n_train is not None else None
    return TableResult(comp, table, ratio, len(keys), keys, [*comp.notes, *table.attrs.get("notes", [])],
                       values=trials.values)


def paper_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The seed's 8 columns, in its order."""
    return table[SEED_COLUMNS]


def correction_columns(table: pd.DataFrame) -> pd.DataFrame:
    """Everything ``paired_table`` adds to the seed's columns (corrected tests, effect sizes, Bayes)."""
    return table[[c for c in table.columns if c not in SEED_COLUMNS]]


def mean_differences(res: TableResult) -> dict[str, float]:
    """Per metric, the mean of treatment − baseline over the paired folds."""
    c = res.comparison
    out = {}
    for m in res.table.index:
        t, b = c.treatment_values[m], c.baseline_values[m]
        out[m] = float(np.mean([t[k] - b[k] for k in res.keys]))
    return out


def arm_summary(trials: Trials, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Per arm: number of runs and mean, sd (ddof = 1, over folds and seeds) of every metric; the mean
    size (``model/params``, ``model/flops``) where the runs logged it (a per-arm search varies it)."""
    metrics = list(metrics) if metrics else trials.metrics
    sizes = [s for s in SIZE_COLUMNS if s in trials.runs.columns]
    columns = [C.FUSION, C.LABELS, RUNS_COLUMN, *sizes, *(f"{m}_{s}" for m in metrics for s in ("mean", "sd"))]
    rows = {}
    for arm in trials.arms:
        runs = trials.runs[trials.runs[C.ARM] == arm]
        row: dict[str, object] = {
            C.FUSION: runs[C.FUSION].iloc[0],
            C.LABELS: runs[C.LABELS].iloc[0],
            RUNS_COLUMN: len(runs),
        }
        for size in sizes:
            row[size] = runs[size].dropna().astype(float).mean()
        for m in metrics:
            vals = runs[m].dropna().astype(float)
            row[f"{m}_mean"] = vals.mean() if len(vals) else float("nan")
            row[f"{m}_sd"] = vals.std(ddof=1) if len(vals) > 1 else float("nan")
        rows[arm] = row
    df = pd.DataFrame.from_dict(rows, orient="index", columns=columns) if rows else pd.DataFrame(columns=columns)
    df.index.name = "arm"
    return df


def arm_values(trials: Trials, metric: str) -> dict[str, dict[Hashable, float]]:
    """Per arm: {fold key: value} of one metric; the key is (fold, seed) when the sweep has several seeds."""
    runs = trials.runs
    repeated = runs[C.SEED].nunique() > 1
    out: dict[str, dict] = {}
    for arm in trials.arms:
        rows = runs[(runs[C.ARM] == arm) & runs[metric].notna()]
        out[arm] = {
            ((int(r.fold), r.seed) if repeated else int(r.fold)): float(r[metric]) for _, r in rows.iterrows()
        }
    return out


def arm_summary_display(summary: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The per-arm table as text: the run count and ``mean ± sd`` per metric."""
    out = pd.DataFrame(index=summary.index)
    out[RUNS_COLUMN] = [str(int(n)) for n in summary[RUNS_COLUMN]]
    for size, label in SIZE_LABELS.items():
        if size in summary.columns:
            out[label] = ["n/a" if math.isnan(v) else f"{v:,.0f}" for v in summary[size]]
    for m in metrics:
        out[m] = [
            "n/a" if math.isnan(mu) else (f"{mu:.4f}" if math.isnan(sd) else f"{mu:.4f} ± {sd:.4f}")
            for mu, sd in zip(summary[f"{m}_mean"], summary[f"{m}_sd"], strict=True)
        ]
    return out


def arm_table_metrics(trials: Trials) -> list[str]:
    """The per-arm table's metrics: those a reader compares (every metric for files of other names)."""
    return [m for m in ARM_TABLE_METRICS if m in trials.metrics] or list(trials.metrics)
