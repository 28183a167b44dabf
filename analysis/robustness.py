"""Robustness curves per arm and MultiBench's robustness numbers (DESIGN §14).

Each trial logs ``robust/<condition>/<metric>`` (:mod:`erc.robustness`: one modality missing, or
Gaussian noise on one modality at σ × its training std) beside its clean ``selected/<metric>``. Here:

- :func:`long_frame`: those values as one row per (trial, condition, metric), the clean value as
  σ = 0 of each modality's curve;
- :func:`curves`: per arm and modality, the metric's mean over folds at each σ, and with the modality
  missing;
- :func:`relative_robustness`, :func:`effective_robustness`: MultiBench's two numbers (Liang et al.
  2021, ``eval_scripts/robustness.py``). *Relative* robustness is the area under the metric-vs-noise
  curve; MultiBench's levels are equally spaced on [0, 1], ours are σ ∈ {0, 0.5, 1, 2}, so the area
  (trapezoids) is divided by the largest σ: the curve's mean height, in the metric's units. *Effective*
  robustness is how far the curve stays above a reference method's curve shifted to start at this
  arm's clean value, summed over the noisy levels: ``Σ_σ>0 f(σ) − (ref(σ) − ref(0) + f(0))``.
  MultiBench's reference is late fusion; ours is the reference arm (the first arm in the paper's order
  unless named), whose own effective robustness is 0 by construction. MultiBench reports both after a
  max–min normalisation across the methods compared; :func:`robustness_table` gives the raw numbers
  and the normalised ones (``_norm``, 1 = the most robust arm of the table, 0 = the least);
- :func:`draw_curves` / :func:`robustness_plot`: ``robustness_<metric>.png``, a panel per modality,
  the metric against σ per arm, the missing-modality value at the right end.

Pure functions over DataFrames; no MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from erc import contract as C
from erc.contract import MISSING, NOISE, parse_condition
from erc.vocab import MODALITIES

CLEAN = "clean"
KEY = [C.FOLD, C.SEED, C.ARM]
LONG_COLUMNS = [*KEY, "modality", "kind", "sigma", "metric", "value"]
TABLE_COLUMNS = ["clean", "missing", "missing drop", "relative", "effective", "relative_norm", "effective_norm"]


def figure_name(metric: str) -> str:
    """``robustness_acc.png``."""
    return f"robustness_{metric}.png"


def long_frame(wide: pd.DataFrame, metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (trial, condition, metric) from ``wide``: one row per trial with columns ``fold``,
    ``seed``, ``arm`` and the run's logged keys (``selected/<m>``, ``robust/<condition>/<m>``).

    The clean value (``selected/<m>``) appears once per modality, as ``kind='clean'``, σ = 0.
    """
    rows = []
    for _, run in wide.iterrows():
        key = {k: run[k] for k in KEY}
        for column, value in run.items():
            if not isinstance(column, str) or value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if column.startswith(C.ROBUST_PREFIX):
                name, _, metric = column[len(C.ROBUST_PREFIX):].partition("/")
                try:
                    cond = parse_condition(name)
                except ValueError:
                    continue
                if metrics is None or metric in metrics:
                    rows.append({**key, "modality": cond.modality, "kind": cond.kind,
                                 "sigma": cond.sigma if cond.kind == NOISE else math.nan,
                                 "metric": metric, "value": float(value)})
            elif column.startswith(C.SELECTED_PREFIX):
                metric = column[len(C.SELECTED_PREFIX):]
                if metrics is None or metric in metrics:
                    rows += [{**key, "modality": m, "kind": CLEAN, "sigma": 0.0, "metric": metric,
                              "value": float(value)} for m in MODALITIES]
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def curves(long: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per (arm, modality): the mean over trials at each σ (columns: the levels, 0 = clean) and with the
    modality missing (column ``missing``). Arms in their order of appearance."""
    own = long[long["metric"] == metric]
    noisy = own[own["kind"].isin([CLEAN, NOISE])]
    table = noisy.pivot_table(index=[C.ARM, "modality"], columns="sigma", values="value", aggfunc="mean")
    missing = own[own["kind"] == MISSING].groupby([C.ARM, "modality"])["value"].mean().rename(MISSING)
    out = table.join(missing, how="outer")
    arms = list(dict.fromkeys(own[C.ARM]))
    return out.reindex(pd.MultiIndex.from_tuples(
        [(a, m) for a in arms for m in MODALITIES if (a, m) in out.index], names=[C.ARM, "modality"]))


def relative_robustness(levels: Sequence[float], values: Sequence[float]) -> float:
    """The area under ``values`` against ``levels`` (trapezoids, first level the clean one), divided by
    the span of the levels: the curve's mean height."""
    x, y = np.asarray(levels, dtype=float), np.asarray(values, dtype=float)
    if len(x) < 2 or np.isnan(y).any():
        return math.nan
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / (x[-1] - x[0]))


def effective_robustness(values: Sequence[float], reference: Sequence[float]) -> float:
    """``Σ_{i>0} values[i] − (reference[i] − reference[0] + values[0])``: performance under noise beyond
    the reference's, once the reference is shifted to start at this curve's clean value."""
    f, ref = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    if len(f) != len(ref) or np.isnan(f).any() or np.isnan(ref).any():
        return math.nan
    # rounded: curves that differ only by a constant give exactly 0, not float dust
    return float(np.round(np.sum(f[1:] - (ref[1:] - ref[0] + f[0])), 12))


def _maxmin(values: pd.Series) -> pd.Series:
    span = values.max() - values.min()
    return (values - values.min()) / span if span > 1e-9 else values * 0.0


def robustness_table(long: pd.DataFrame, metric: str, reference: str | None = None) -> pd.DataFrame:
    """Per (arm, modality): clean and missing-modality values, their drop, and MultiBench's relative and
    effective robustness of the noise curve (raw and max–min normalised across the arms, per modality).

    ``reference``: the arm effective robustness is measured against (default: the first arm).
    """
    table = curves(long, metric)
    if table.empty:
        return pd.DataFrame(columns=TABLE_COLUMNS)
    levels = sorted(c for c in table.columns if c != MISSING)
    arms = list(dict.fromkeys(table.index.get_level_values(C.ARM)))
    reference = reference or arms[0]
    if reference not in arms:
        raise ValueError(f"reference arm {reference!r} has no robustness values; arms: {arms}")
    out = pd.DataFrame(index=table.index, columns=TABLE_COLUMNS, dtype=float)
    for (arm, modality), row in table.iterrows():
        curve = [row[s] for s in levels]
        ref = [table.loc[(reference, modality), s] for s in levels] if (reference, modality) in table.index else None
        missing = row.get(MISSING, math.nan)
        out.loc[(arm, modality)] = [
            row[levels[0]], missing, row[levels[0]] - missing, relative_robustness(levels, curve),
            effective_robustness(curve, ref) if ref is not None else math.nan, math.nan, math.nan]
    for modality in MODALITIES:
        rows = out.index.get_level_values("modality") == modality
        for raw in ("relative", "effective"):
            out.loc[rows, f"{raw}_norm"] = _maxmin(out.loc[rows, raw]).to_numpy()
    out.attrs["reference"] = reference
    out.attrs["levels"] = levels
    return out


def draw_curves(long: pd.DataFrame, metric: str, title: str | None = None) -> Figure:
    """A panel per modality: ``metric`` (mean over folds) against σ per arm, the missing-modality value
    at the right end (joined by a dotted line)."""
    import matplotlib.pyplot as plt

    table = curves(long, metric)
    levels = sorted(c for c in table.columns if c != MISSING)
    title = title or f"robustness: {metric} on the held-out folds (mean over folds)"
    width, height = 5.5 * len(MODALITIES), 4.0
    fig, axes = plt.subplots(1, len(MODALITIES), figsize=(width, height), sharey=True, squeeze=False)
    # fixed margins instead of tight_layout, which draws the figure once more to measure it: the title's
    # lines and each panel's title above, the σ axis below
    above = 0.35 + 0.22 * (title.count("\n") + 1)
    fig.subplots_adjust(left=0.8 / width, right=1 - 0.2 / width, bottom=0.55 / height, top=1 - above / height,
                        wspace=0.08)
    end = (levels[-1] if levels else 0.0) + 1.0  # where the missing-modality value sits
    for ax, modality in zip(axes[0], MODALITIES, strict=True):
        for arm in dict.fromkeys(table.index.get_level_values(C.ARM)):
            if (arm, modality) not in table.index:
                continue
            row = table.loc[(arm, modality)]
            line, = ax.plot(levels, [row[s] for s in levels], marker="o", label=arm)
            if not math.isnan(row.get(MISSING, math.nan)):
                ax.plot([levels[-1], end], [row[levels[-1]], row[MISSING]], linestyle=":", color=line.get_color())
                ax.plot([end], [row[MISSING]], marker="s", color=line.get_color())
        ax.set_xticks([*levels, end], [*(f"{s:g}" for s in levels), "missing"])
        ax.set(title=f"{modality} perturbed", xlabel="noise σ (× training std)", ylabel=metric)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(title)
    return fig


def robustness_plot(long: pd.DataFrame, metric: str, path: str | Path, title: str | None = None) -> Path:
    """Save :func:`draw_curves` as a PNG at ``path``."""
    from analysis.plots import save

    return save(draw_curves(long, metric, title), path)


__all__ = ["CLEAN", "curves", "draw_curves", "effective_robustness", "figure_name", "long_frame",
           "relative_robustness", "robustness_plot", "robustness_table"]
