"""Per-fold values from a CSV file instead of MLflow: a paper's published numbers, a spreadsheet, another tool.

The file holds one row per run (an arm on a fold, and a seed when there are repeats)::

    fusion,labels,fold,acc,macro_f1
    outer,peakl,0,0.852,0.690
    concat,peakl,0,0.844,0.668
    ...

- ``fold`` (an integer) is required; ``seed`` is optional (repeats are paired on (fold, seed)).
- ``n_train`` / ``n_valid``, when present, are the fold sizes the Nadeau-Bengio correction uses
  (equal folds are assumed without them, as for runs that do not log them).
- Every other column is a factor (text: ``fusion``, ``labels``, ``arm`` or any name of yours) or a
  metric (numbers). A column named as a factor (``--factor``, ``--where``) is a factor even when it
  holds numbers (a learning rate, say).

The rows become the same :class:`analysis.trials.Trials` that runs read from MLflow become, so the
tables, corrections and figures are computed by the very same code.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from analysis.options import VALUES_CSV_HELP
from analysis.trials import BASE_COLUMNS, SIZE_COLUMNS, Sweep, Trials, arm_of
from erc import contract as C

FOLD, SEED = C.FOLD, C.SEED
# Columns that are never a factor or a metric (run_id: Trials names a file's run by its line).
RESERVED = (FOLD, SEED, C.N_TRAIN, C.N_VALID, "run_id")


@dataclass
class ValuesFile(Sweep):
    """A CSV of per-fold values in place of an MLflow selection (no experiment, no parent run)."""

    path: Path = Path()

    @property
    def description(self) -> str:
        return f"values file {str(self.path)!r}"

    @property
    def scope(self) -> str:
        return str(self.path)


def _or_none(col: pd.Series) -> pd.Series:
    return pd.Series([v or None for v in col], index=col.index, dtype=object)


def load_values_csv(path: str | Path, factors: Iterable[str] = ()) -> Trials:
    """Read a CSV of per-fold values (see the module docstring) into ``Trials``.

    ``factors`` names columns to treat as factors even when they hold numbers. Raises ValueError,
    naming the rows, for a missing or non-integer fold or a non-numeric cell in a metric column.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"values file {path} not found")
    raw = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    raw.columns = [str(c).strip() for c in raw.columns]
    if FOLD not in raw.columns:
        raise ValueError(f"{path}: no '{FOLD}' column; columns: {', '.join(raw.columns)}. Expected {VALUES_CSV_HELP}")
    if raw.empty:
        raise ValueError(f"{path}: no rows")
    folds = pd.to_numeric(raw[FOLD], errors="coerce")
    bad = [i + 2 for i, (f, text) in enumerate(zip(folds, raw[FOLD], strict=True))
           if pd.isna(f) or f != int(f) or not text.strip()]
    if bad:
        raise ValueError(f"{path}: '{FOLD}' must be an integer; bad value on line(s) {', '.join(map(str, bad))}")
    named = set(factors)
    metrics, attrs = [], []
    for col in raw.columns:
        if col in RESERVED:
            continue
        numbers = pd.to_numeric(raw[col], errors="coerce")
        blank = raw[col].str.strip() == ""
        if col in named or col in (C.FUSION, C.LABELS, C.ARM) or numbers[~blank].isna().all():
            attrs.append(col)
        elif numbers[~blank].isna().any():
            lines = [str(i + 2) for i in numbers.index[numbers.isna() & ~blank]]
            raise ValueError(f"{path}: column {col!r} mixes numbers and text (line(s) {', '.join(lines)}); "
                             "name it with --factor/--where if it is a factor")
        else:
            metrics.append(col)
    if not metrics:
        raise ValueError(f"{path}: no metric columns (columns holding numbers besides {', '.join(RESERVED)})")

    def text(col: str) -> pd.Series:
        return raw[col].str.strip() if col in raw.columns else pd.Series([""] * len(raw), index=raw.index)

    runs = pd.DataFrame({
        "run_id": [f"line {i + 2}" for i in range(len(raw))],
        "fold": folds.astype(int),
        "seed": text(SEED),
        C.FUSION: _or_none(text(C.FUSION)),
        C.LABELS: _or_none(text(C.LABELS)),
    })
    arm = text(C.ARM)
    runs[C.ARM] = [arm_of(a, f, lab) for a, f, lab in zip(arm, runs[C.FUSION], runs[C.LABELS], strict=True)]
    for col in (C.N_TRAIN, C.N_VALID):
        runs[col] = pd.to_numeric(raw[col], errors="coerce") if col in raw.columns else float("nan")
    for m in metrics:  # blank cells are NaN: paired_table refuses them and names the fold
        runs[m] = pd.to_numeric(raw[m], errors="coerce")
    sizes = [m for m in metrics if m in SIZE_COLUMNS]  # described per arm, never compared
    metrics = [m for m in metrics if m not in SIZE_COLUMNS]
    runs = runs[[*BASE_COLUMNS, *sizes, *metrics]]
    attributes = pd.DataFrame({col: [v or None for v in text(col)] for col in attrs}, index=runs.index, dtype=object)
    source = ValuesFile(experiment_id="", experiment_name="", parent_run_id=None, name=path.stem, path=path)
    return Trials(sweep=source, runs=runs, metrics=metrics, attributes=attributes)


# The seed paper's published per-fold values (provenance: analysis/data/README.md).
PAPER_VALUES = Path(__file__).resolve().parent / "data" / "paper_fold_values.csv"
