"""The optimism of choosing the epoch on the reported fold (DESIGN §14).

A trial logs three sets of held-out values (:data:`erc.contract.VALUE_PREFIXES`): ``selected`` (the
epoch chosen on the dev split: what the tables report by default), ``oracle`` (the epoch chosen on the
held-out fold itself, what the paper's recipe reports) and ``best`` (each metric's own best epoch). This
module states how much the last two flatter the first, and whether a paired table would reach another
conclusion on them:

- :func:`optimism_table`: per arm and metric, the mean over paired folds of ``oracle − selected`` and
  ``best − selected`` (positive for a metric to maximise means the optimistic values look better; for a
  loss, negative does);
- :func:`conclusion` / :func:`conclusions_table` / :func:`conclusions_sentence`: the verdict of each
  paired table row (treatment better, baseline better, or no difference at ``alpha``) on each set of
  values, and one sentence saying how many change;
- :func:`draw_optimism` / :func:`optimism_plot`: the optimism per arm as bars, for one metric.

Pure functions over DataFrames shaped like :attr:`analysis.trials.Trials.runs` (columns ``fold``,
``seed``, ``arm`` and one per metric) and over ``paired_table`` outputs; no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from erc import contract as C

SELECTED, ORACLE, BEST = "selected", "oracle", "best"
OPTIMISTIC = (ORACLE, BEST)  # what is compared with SELECTED
KEY = [C.FOLD, C.SEED, C.ARM]  # a trial: what pairs the three sets of values of one run
N_COLUMN = "folds"
# verdicts of one paired-table row
TREATMENT, BASELINE, NONE = "treatment better", "baseline better", "no difference"


def gap_column(values: str) -> str:
    """``oracle − selected``: the optimism table's column for one optimistic set of values."""
    return f"{values} − {SELECTED}"


def optimism_table(runs: Mapping[str, pd.DataFrame], metrics: Sequence[str],
                   arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Per (arm, metric): paired folds, mean ``selected`` and mean ``<v> − selected`` for ``v`` in
    ``oracle``, ``best`` (those of ``runs`` present).

    ``runs[v]``: one row per trial (columns ``fold``, ``seed``, ``arm`` and the metrics) with values
    ``v``; rows are paired on (fold, seed, arm) and a trial lacking a value is left out of that mean.
    ``arms``: their order (default: as they first appear).
    """
    if SELECTED not in runs:
        raise ValueError("the optimism is measured against the selected values, which are missing")
    base = runs[SELECTED]
    present = [v for v in OPTIMISTIC if v in runs]
    rows = []
    for arm in arms if arms is not None else dict.fromkeys(base[C.ARM]):
        for metric in metrics:
            row: dict[str, object] = {C.ARM: arm, "metric": metric}
            own = base[base[C.ARM] == arm][[*KEY, metric]].dropna()
            row[N_COLUMN] = len(own)
            row[SELECTED] = float(own[metric].mean()) if len(own) else math.nan
            for values in present:
                other = runs[values]
                if metric not in other.columns:
                    row[gap_column(values)] = math.nan
                    continue
                paired = own.merge(other[[*KEY, metric]].dropna(), on=KEY, suffixes=("", "_other"))
                gap = paired[f"{metric}_other"] - paired[metric]
                row[gap_column(values)] = float(gap.mean()) if len(gap) else math.nan
            rows.append(row)
    columns = [C.ARM, "metric", N_COLUMN, SELECTED, *(gap_column(v) for v in present)]
    return pd.DataFrame(rows, columns=columns).set_index([C.ARM, "metric"])


def optimism_display(table: pd.DataFrame) -> pd.DataFrame:
    """The optimism table as one short text table: a row per arm, a column per metric, each cell
    ``<oracle − selected> / <best − selected>`` (signed, 3 decimals)."""
    gaps = [c for c in table.columns if c.endswith(f"− {SELECTED}")]
    arms = list(dict.fromkeys(table.index.get_level_values(C.ARM)))
    metrics = list(dict.fromkeys(table.index.get_level_values("metric")))
    out = pd.DataFrame(index=pd.Index(arms, name=C.ARM), columns=metrics, dtype=object)
    for (arm, metric), row in table.iterrows():
        out.loc[arm, metric] = " / ".join("n/a" if math.isnan(row[g]) else f"{row[g]:+.3f}" for g in gaps)
    return out


def conclusion(t: float, p: float, alpha: float) -> str:
    """The verdict of one paired-table row: the side its T favours when ``p < alpha``, else none."""
    if any(isinstance(x, float) and math.isnan(x) for x in (t, p)) or p >= alpha:
        return NONE
    return TREATMENT if t > 0 else BASELINE


def conclusions_table(tables: Mapping[str, Mapping[str, pd.DataFrame]], alpha: float,
                      p_column: str = "p-val") -> pd.DataFrame:
    """One row per (table, metric): the verdict on each set of values and whether any differs.

    ``tables[values][label]``: the ``paired_table`` of one contrast (index: metrics; columns ``T`` and
    ``p_column``) computed on ``values``. A table or metric missing from a set of values is ``n/a``.
    """
    if SELECTED not in tables:
        raise ValueError("conclusions are compared with those on the selected values, which are missing")
    order = [SELECTED, *(v for v in OPTIMISTIC if v in tables)]
    rows = []
    for label, table in tables[SELECTED].items():
        for metric in table.index:
            row: dict[str, object] = {"table": label, "metric": metric}
            for values in order:
                other = tables[values].get(label)
                if other is None or metric not in other.index:
                    row[values] = "n/a"
                    continue
                row[values] = conclusion(float(other.loc[metric, "T"]), float(other.loc[metric, p_column]), alpha)
            known = [row[v] for v in order if row[v] != "n/a"]
            row["changes"] = "yes" if len(set(known)) > 1 else "no"
            rows.append(row)
    return pd.DataFrame(rows, columns=["table", "metric", *order, "changes"]).set_index(["table", "metric"])


def conclusions_sentence(conclusions: pd.DataFrame, alpha: float) -> str:
    """One sentence: how many of the tables' verdicts change on the optimistic values."""
    n = len(conclusions)
    if n == 0:
        return "No paired table could be computed, so no conclusion can change."
    parts = []
    for values in (v for v in OPTIMISTIC if v in conclusions.columns):
        known = conclusions[conclusions[values] != "n/a"]
        changed = int((known[values] != known[SELECTED]).sum())
        parts.append(f"{changed} of {len(known)} on {values} values")
    if not parts:
        return f"Only selected values were logged; {n} verdicts (at α = {alpha}) have nothing to be compared with."
    verdict = ("none of the tables' conclusions changes" if not (conclusions["changes"] == "yes").any()
               else "some of the tables' conclusions change")
    return (f"At α = {alpha}, {verdict} when the epoch is chosen on the reported fold instead of the dev split "
            f"(verdicts that differ from those on selected values: {'; '.join(parts)}).")


def draw_optimism(table: pd.DataFrame, metric: str, title: str | None = None) -> Figure:
    """Bars per arm: the mean ``oracle − selected`` and ``best − selected`` of ``metric``."""
    import matplotlib.pyplot as plt

    rows = table.xs(metric, level="metric")
    gaps = [c for c in rows.columns if c.endswith(f"− {SELECTED}")]
    # fixed margins instead of tight_layout (a second draw to measure the figure): the arm names under
    # the bars, at 30°, need about 0.04 in per character
    below = 0.55 + 0.04 * max((len(str(arm)) for arm in rows.index), default=0)
    fig_width, fig_height = max(5.0, 0.9 * len(rows) + 2), 3.8 + below
    fig, ax = plt.subplots(figsize=(fig_width, fig_height))
    fig.subplots_adjust(left=0.9 / fig_width, right=1 - 0.2 / fig_width, bottom=below / fig_height,
                        top=1 - 0.45 / fig_height)
    x = np.arange(len(rows))
    width = 0.8 / max(len(gaps), 1)
    for i, column in enumerate(gaps):
        ax.bar(x + (i - (len(gaps) - 1) / 2) * width, rows[column].to_numpy(dtype=float), width, label=column)
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xticks(x, list(rows.index), rotation=30, ha="right")
    ax.set(ylabel=f"mean difference in {metric}", title=title or f"optimism of choosing the epoch on the held-out fold: {metric}")
    ax.legend()
    return fig


def optimism_plot(table: pd.DataFrame, metric: str, path: str | Path, title: str | None = None) -> Path:
    """Save :func:`draw_optimism` as a PNG at ``path``."""
    from analysis.plots import save

    return save(draw_optimism(table, metric, title), path)


__all__ = ["BASELINE", "BEST", "NONE", "ORACLE", "SELECTED", "TREATMENT", "conclusion", "conclusions_sentence",
           "conclusions_table", "draw_optimism", "gap_column", "optimism_display", "optimism_plot",
           "optimism_table"]
