"""Statistics over more than two arms (DESIGN §13; Demšar, JMLR 2006): pure functions over fold values.

With k > 2 arms, k(k-1)/2 paired tables multiply the comparisons. Demšar's recipe instead:

1. the Friedman test per metric over the arms' fold values (the folds are the blocks: every arm was
   scored on the same folds) — :func:`friedman` (scipy's ``friedmanchisquare``);
2. if it rejects, a post-hoc test on the mean ranks: Holm-corrected comparisons of every arm against a
   control arm (:func:`posthoc_vs_control`, the z-tests of Demšar §3.2.2), or Nemenyi's all-pairs test
   (:func:`posthoc_nemenyi`) — both from scikit-posthocs, the Holm step from statsmodels;
3. a critical-difference diagram (:func:`cd_diagram`): arms on their mean rank (1 = best), joined by a
   bar where Nemenyi's test does not separate them (scikit-posthocs' ``critical_difference_diagram``).

The input is a matrix per metric: one row per block (a fold, or a (fold, seed) pair), one column per
arm (:func:`fold_matrix` builds it from a long table and keeps complete blocks only). Ranks follow the
metric's direction (:func:`erc.vocab.metric_mode`): rank 1 is the best arm, for a loss the lowest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scikit_posthocs as sp
from scipy import stats
from statsmodels.stats.multitest import multipletests

from analysis.options import POSTHOC_METHODS
from erc.vocab import metric_mode

FRIEDMAN_COLUMNS = ("metric", "statistic", "p", "k", "n")
DEFAULT_POSTHOC = POSTHOC_METHODS[0]
ALPHA = 0.05


def fold_matrix(values: pd.DataFrame, metric: str, *, arm: str = "arm",
                blocks: Sequence[str] = ("fold",), arms: Sequence[str] | None = None) -> pd.DataFrame:
    """Blocks × arms of one metric from a long table (one row per run), complete blocks only.

    ``arms`` orders (and selects) the columns; a block where any of them lacks a value is dropped, as the
    Friedman test needs every arm on every block.
    """
    table = values.pivot_table(index=list(blocks), columns=arm, values=metric, aggfunc="first")
    if arms is not None:
        missing = [a for a in arms if a not in table.columns]
        if missing:
            raise ValueError(f"no {metric} values for arm(s) {missing}")
        table = table[list(arms)]
    table.columns.name = arm
    return table.dropna().astype(float)


def _check(matrix: pd.DataFrame) -> None:
    n, k = matrix.shape
    if k < 3:
        raise ValueError(f"the Friedman test needs at least 3 arms, got {k}")
    if n < 2:
        raise ValueError(f"the Friedman test needs at least 2 complete blocks (folds), got {n}")


def friedman(matrix: pd.DataFrame) -> tuple[float, float, int, int]:
    """(statistic, p, k arms, n blocks): ``scipy.stats.friedmanchisquare`` over the arms' columns
    (tie-corrected χ² approximation)."""
    _check(matrix)
    res = stats.friedmanchisquare(*(matrix[c].to_numpy() for c in matrix.columns))
    return float(res.statistic), float(res.pvalue), matrix.shape[1], matrix.shape[0]


def mean_ranks(matrix: pd.DataFrame, metric: str) -> pd.Series:
    """Each arm's mean rank over the blocks, 1 = best in the metric's direction (ties: average ranks)."""
    oriented = matrix if metric_mode(metric) == "min" else -matrix
    return oriented.rank(axis=1, method="average").mean(axis=0)


def posthoc_nemenyi(matrix: pd.DataFrame) -> pd.DataFrame:
    """Arms × arms p-values of Nemenyi's all-pairs test on the Friedman ranks."""
    return sp.posthoc_nemenyi_friedman(matrix)


def posthoc_vs_control(matrix: pd.DataFrame, metric: str, control: str, *, alpha: float = ALPHA) -> pd.DataFrame:
    """Every other arm against ``control``: mean ranks, z, two-sided p and its Holm correction.

    z = (R_arm − R_control) / √(k(k+1) / 6n) (Demšar §3.2.2; scikit-posthocs' Siegel–Castellan test gives
    the p-values), Holm over the k − 1 comparisons (statsmodels). ``better``: the arm's mean rank beats the
    control's. Rows in the matrix's arm order.
    """
    _check(matrix)
    if control not in matrix.columns:
        raise ValueError(f"control arm {control!r} is not among the arms {list(matrix.columns)}")
    n, k = matrix.shape
    ranks = mean_ranks(matrix, metric)
    pairwise = sp.posthoc_siegel_friedman(matrix)  # unadjusted two-sided p-values of the rank z-tests
    others = [a for a in matrix.columns if a != control]
    p = pairwise.loc[others, control].to_numpy(dtype=float)
    reject, p_holm, _, _ = multipletests(p, alpha=alpha, method="holm")
    se = np.sqrt(k * (k + 1) / (6.0 * n))
    return pd.DataFrame({
        "arm": others,
        "control": control,
        "mean_rank": ranks[others].to_numpy(),
        "control_rank": float(ranks[control]),
        "z": (ranks[others].to_numpy() - ranks[control]) / se,
        "p": p,
        "p_holm": p_holm,
        "significant": reject,
        "better": ranks[others].to_numpy() < ranks[control],
    })


@dataclass(frozen=True)
class ManyArms:
    """One metric's tests: the Friedman result, the mean ranks, the post-hoc table and Nemenyi's matrix."""

    metric: str
    statistic: float
    p: float
    k: int
    n: int
    ranks: pd.Series
    posthoc: pd.DataFrame  # posthoc_vs_control's table (holm), or the Nemenyi pairs against the control
    nemenyi: pd.DataFrame
    method: str

    def row(self) -> dict[str, object]:
        """Its ``friedman.csv`` row."""
        return {"metric": self.metric, "statistic": self.statistic, "p": self.p, "k": self.k, "n": self.n}


def many_arms(matrix: pd.DataFrame, metric: str, *, control: str, method: str = DEFAULT_POSTHOC,
              alpha: float = ALPHA) -> ManyArms:
    """Friedman, then the post-hoc ``method`` (``holm``: against ``control``; ``nemenyi``: all pairs,
    the control's row shown) for one metric's blocks × arms matrix."""
    if method not in POSTHOC_METHODS:
        raise ValueError(f"post-hoc method must be one of {list(POSTHOC_METHODS)}, not {method!r}")
    statistic, p, k, n = friedman(matrix)
    ranks = mean_ranks(matrix, metric)
    nemenyi = posthoc_nemenyi(matrix)
    if method == "holm":
        posthoc = posthoc_vs_control(matrix, metric, control, alpha=alpha)
    else:
        if control not in matrix.columns:
            raise ValueError(f"control arm {control!r} is not among the arms {list(matrix.columns)}")
        others = [a for a in matrix.columns if a != control]
        posthoc = pd.DataFrame({"arm": others, "control": control, "mean_rank": ranks[others].to_numpy(),
                                "control_rank": float(ranks[control]),
                                "p_nemenyi": nemenyi.loc[others, control].to_numpy(dtype=float)})
        posthoc["significant"] = posthoc["p_nemenyi"] < alpha
        posthoc["better"] = posthoc["mean_rank"] < posthoc["control_rank"]
    return ManyArms(metric, statistic, p, k, n, ranks, posthoc, nemenyi, method)


def friedman_table(results: Sequence[ManyArms]) -> pd.DataFrame:
    """``friedman.csv``: one row per metric, columns :data:`FRIEDMAN_COLUMNS`."""
    return pd.DataFrame([r.row() for r in results], columns=list(FRIEDMAN_COLUMNS))


def cd_diagram(result: ManyArms, path: str | Path, *, title: str | None = None, alpha: float = ALPHA) -> Path:
    """Demšar's critical-difference diagram of one metric, saved as PNG: mean ranks (1 = best) on the axis,
    arms Nemenyi's test does not separate at ``alpha`` joined by a bar."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 0.6 + 0.35 * result.k))
    sp.critical_difference_diagram(result.ranks, result.nemenyi, ax=ax, alpha=alpha)
    ax.set_title(title or f"{result.metric}: mean rank over {result.n} folds (1 = best); "
                          f"Friedman p = {result.p:.3g}", fontsize=9)
    path = Path(path)
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
