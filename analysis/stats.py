"""Fold-paired comparison of two arms: the paper's pingouin table plus the corrections a reviewer asks for.

Everything here works on plain numbers (metric -> {fold key: value}); reading MLflow lives in
``analysis.reader``. Library calls are used wherever a library has the statistic (pingouin for the
t-test, d_z, power, Wilcoxon and Holm; baycomp for the Bayesian correlated t-test); only the
Nadeau-Bengio corrected t-test is computed here, because no installed library exposes it with a
user-supplied n_test/n_train ratio.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Hashable, Mapping, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pingouin as pg
from scipy import stats as sps

from analysis.folds import key_label, sorted_keys
from analysis.options import ALTERNATIVES

# pingouin >= 0.6 renamed three columns; the seed's tables (and our users) use the old names.
PINGOUIN_TO_SEED = {"p_val": "p-val", "CI95": "CI95%", "cohen_d": "cohen-d"}
SEED_COLUMNS = ["T", "dof", "alternative", "p-val", "CI95%", "cohen-d", "BF10", "power"]
NB_COLUMNS = ["T (NB)", "p-val (NB)", "CI95% (NB)"]
EXTENDED_COLUMNS = [
    *NB_COLUMNS,
    "cohen-dz",
    "min-dz80",
    "min-dz80 (NB)",
    "p-val (Wilcoxon)",
    "p-val (Holm)",
    "p-val (NB, Holm)",
]
BAYES_COLUMNS = ["P(T>B)", "P(rope)", "P(B>T)"]

Sizes = float | int | Mapping[Hashable, float] | None


def align(
    treatment: Mapping[str, Mapping[Hashable, float]],
    baseline: Mapping[str, Mapping[Hashable, float]],
) -> dict[str, tuple[list, np.ndarray, np.ndarray]]:
    """Pair the two arms fold by fold (by key, never by position).

    Returns metric -> (sorted keys, treatment values, baseline values). Raises ValueError naming
    every metric and fold that cannot be paired: a missing fold or a NaN value would otherwise be
    dropped silently (pingouin removes NaN pairs), and a t-test on fewer folds than the reader
    believes is exactly the mistake this check exists for.
    """
    t_only = [m for m in treatment if m not in baseline]
    b_only = [m for m in baseline if m not in treatment]
    if t_only or b_only:
        raise ValueError(
            f"metrics differ between arms: only in treatment {t_only or '-'}, only in baseline {b_only or '-'}"
        )
    if not treatment:
        raise ValueError("no metrics to compare")
    problems: list[str] = []
    out: dict[str, tuple[list, np.ndarray, np.ndarray]] = {}
    for metric in treatment:
        tv = {k: v for k, v in treatment[metric].items() if v is not None and np.isfinite(v)}
        bv = {k: v for k, v in baseline[metric].items() if v is not None and np.isfinite(v)}
        every = set(treatment[metric]) | set(baseline[metric])
        miss_t = sorted_keys(every - set(tv))
        miss_b = sorted_keys(every - set(bv))
        if miss_t or miss_b:
            parts = []
            if miss_t:
                parts.append("missing from treatment: " + ", ".join(key_label(k) for k in miss_t))
            if miss_b:
                parts.append("missing from baseline: " + ", ".join(key_label(k) for k in miss_b))
            problems.append(f"metric {metric!r}: " + "; ".join(parts))
            continue
        keys = sorted_keys(tv)
        if len(keys) < 2:
            problems.append(
                f"metric {metric!r}: {len(keys)} paired fold(s); a paired t-test needs at least 2"
            )
            continue
        out[metric] = (
            keys,
            np.array([tv[k] for k in keys], dtype=float),
            np.array([bv[k] for k in keys], dtype=float),
        )
    if problems:
        raise ValueError(
            "cannot pair folds (a missing or NaN value counts as missing): " + " | ".join(problems)
        )
    return out


def _size_vector(sizes: Sizes, keys: Sequence, what: str) -> np.ndarray:
    if sizes is None:
        raise ValueError(
            f"the Nadeau-Bengio correction needs {what} (the fold's utterance count, a number or a "
            "mapping fold key -> count)"
        )
    if isinstance(sizes, Mapping):
        missing = [k for k in keys if k not in sizes]
        if missing:
            raise ValueError(f"{what} lacks " + ", ".join(key_label(k) for k in missing))
        return np.array([float(sizes[k]) for k in keys])
    return np.full(len(keys), float(sizes))


def nb_ratio(n_train: Sizes, n_test: Sizes, keys: Sequence) -> float:
    """n_test / n_train for the NB variance factor, from the average fold sizes.

    Session folds have unequal sizes; averaging them (as bioLeak does) keeps one number per test.
    """
    tr = _size_vector(n_train, keys, "n_train")
    te = _size_vector(n_test, keys, "n_test")
    if np.any(tr <= 0) or np.any(te <= 0):
        raise ValueError("fold sizes must be positive")
    return float(te.mean() / tr.mean())


def nb_ttest(
    diff: np.ndarray, ratio: float, alternative: str = "two-sided", confidence: float = 0.95
) -> tuple[float, float, np.ndarray, int]:
    """Nadeau & Bengio (2003) corrected resampled t-test on per-fold differences.

    t = mean(d) / sqrt((1/n + n_test/n_train) * var(d)), n - 1 dof. The naive paired t-test uses
    1/n alone; the extra term accounts for the folds' overlapping training sets. With n = k * r
    differences from r repeats of k-fold CV this is Bouckaert & Frank's (2004) corrected repeated
    k-fold test, so the same function serves both. Returns (T, p, CI of the mean difference, dof).
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}")
    diff = np.asarray(diff, dtype=float)
    n = diff.size
    dof = n - 1
    mean = diff.mean()
    se = math.sqrt((1.0 / n + ratio) * diff.var(ddof=1))
    if se == 0:
        # Every fold moved by the same amount (or not at all): T is undefined, as in pingouin.
        return float("nan"), float("nan"), np.array([np.nan, np.nan]), dof
    tval = mean / se
    if alternative == "two-sided":
        pval = 2 * sps.t.sf(abs(tval), dof)
        tcrit = sps.t.ppf(1 - (1 - confidence) / 2, dof)
        ci = np.array([mean - tcrit * se, mean + tcrit * se])
    elif alternative == "greater":
        pval = sps.t.sf(tval, dof)
        ci = np.array([mean - sps.t.ppf(confidence, dof) * se, np.inf])
    else:
        pval = sps.t.cdf(tval, dof)
        ci = np.array([-np.inf, mean + sps.t.ppf(confidence, dof) * se])
    return float(tval), float(pval), ci, dof


def min_detectable_dz(
    n: int, alternative: str = "two-sided", power: float = 0.8, alpha: float = 0.05
) -> float:
    """Smallest |d_z| the naive paired t-test detects with the given power at n pairs.

    Reported instead of pingouin's post-hoc power, which is a function of p and says nothing new.
    """
    d = pg.power_ttest(d=None, n=n, power=power, alpha=alpha, contrast="paired", alternative=alternative)
    return float(abs(d))


@contextmanager
def full_precision():
    """Switch off pingouin's display rounding (CI95 to 2 decimals, BF10 as a string) for a block.

    Metric differences are ~0.01, so a 2-decimal CI is useless and a string BF10 cannot be
    compared; the report formats numbers itself. pingouin's own helper for this is private, so
    save and restore its public ``options`` dict.
    """
    saved = dict(pg.options)
    for key in [k for k in pg.options if k.startswith("round.")]:
        del pg.options[key]
    pg.options["round"] = None
    try:
        yield
    finally:
        pg.options.clear()
        pg.options.update(saved)


def _pingouin_row(t: np.ndarray, b: np.ndarray, alternative: str) -> dict:
    with full_precision():
        res = pg.ttest(t, b, paired=True, alternative=alternative).rename(columns=PINGOUIN_TO_SEED)
    row = res.iloc[0].to_dict()
    # pingouin only computes BF10 for two-sided tests; keep the column so every table has the same shape.
    row.setdefault("BF10", float("nan"))
    return {c: row[c] for c in SEED_COLUMNS}


def _wilcoxon_p(t: np.ndarray, b: np.ndarray, alternative: str) -> float:
    if np.all(t == b):
        return float("nan")
    with warnings.catch_warnings():
        # scipy warns about the exact distribution with ties/zeros; the n-floor warning below is ours.
        warnings.simplefilter("ignore")
        return float(pg.wilcoxon(t, b, alternative=alternative)["p_val"].iloc[0])


def wilcoxon_floor(n_nonzero: int, alternative: str = "two-sided") -> float:
    """Smallest p the exact Wilcoxon signed-rank test can return with n non-zero differences."""
    tails = 2 if alternative == "two-sided" else 1
    return min(1.0, tails / 2**n_nonzero)


def paired_table(
    treatment: Mapping[str, Mapping[Hashable, float]],
    baseline: Mapping[str, Mapping[Hashable, float]],
    alternative: str = "two-sided",
    *,
    extended: bool = False,
    n_train: Sizes = None,
    n_test: Sizes = None,
    rope: float | None = None,
    runs: int = 1,
) -> pd.DataFrame:
    """The paper's fold-paired t-test table: one row per metric, treatment minus baseline.

    ``treatment`` / ``baseline`` map metric name -> {fold key: value}; folds are matched by key
    (an int fold, or a (fold, seed) tuple with repeats). Columns are exactly
    ``T, dof, alternative, p-val, CI95%, cohen-d, BF10, power`` with the values of
    ``pingouin.ttest(treatment, baseline, paired=True)`` at full precision (pingouin's default
    display rounding of CI95 and BF10 is switched off; CI95% holds a 2-array, like pingouin's).

    ``extended=True`` appends (needs ``n_train`` and ``n_test``: numbers or fold key -> count):
    the Nadeau-Bengio corrected T, p and CI; Cohen's d_z (signed, mean/sd of the differences);
    the smallest d_z detectable with 80 % power (naive and NB); the Wilcoxon signed-rank p; and
    Holm-adjusted naive and NB p-values across the rows. ``rope`` (>= 0) appends baycomp's
    Bayesian correlated t-test probabilities P(T>B), P(rope), P(B>T); ``runs`` is the number of CV
    repeats it needs. Free-text caveats (e.g. the Wilcoxon floor) are in ``df.attrs["notes"]``.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    if rope is not None and rope < 0:
        raise ValueError("rope must be >= 0")
    pairs = align(treatment, baseline)
    notes: list[str] = []
    rows: dict[str, dict] = {}
    for metric, (keys, t, b) in pairs.items():
        row = _pingouin_row(t, b, alternative)
        if extended:
            ratio = nb_ratio(n_train, n_test, keys)
            nb_t, nb_p, nb_ci, _ = nb_ttest(t - b, ratio, alternative)
            n = len(keys)
            row.update(
                {
                    "T (NB)": nb_t,
                    "p-val (NB)": nb_p,
                    "CI95% (NB)": nb_ci,
                    "cohen-dz": float(pg.compute_effsize(t, b, paired=True, eftype="cohen_dz"))
                    if np.any(t != b)
                    else float("nan"),
                    "min-dz80": min_detectable_dz(n, alternative),
                    # Power depends only on the noncentrality d*sqrt(n) and the dof; NB divides the
                    # noncentrality by sqrt(1 + n * ratio), so the detectable d_z grows by that factor.
                    "min-dz80 (NB)": min_detectable_dz(n, alternative) * math.sqrt(1 + n * ratio),
                    "p-val (Wilcoxon)": _wilcoxon_p(t, b, alternative),
                }
            )
            floor = wilcoxon_floor(int(np.count_nonzero(t - b)), alternative)
            if floor > 0.05:
                notes.append(
                    f"Wilcoxon: with {int(np.count_nonzero(t - b))} non-zero paired differences "
                    f"its p cannot go below {floor:.4g} ({alternative}), so it can never reach 0.05."
                )
        if rope is not None:
            row.update(bayes_correlated(t, b, rope, runs))
        rows[metric] = row
    df = pd.DataFrame.from_dict(rows, orient="index")
    df.index.name = "metric"
    if extended:
        # Holm over the rows of this table (the metric family), on both the naive and the NB p.
        df["p-val (Holm)"] = pg.multicomp(df["p-val"].to_numpy(dtype=float), method="holm")[1]
        df["p-val (NB, Holm)"] = pg.multicomp(df["p-val (NB)"].to_numpy(dtype=float), method="holm")[1]
    columns = (
        SEED_COLUMNS + (EXTENDED_COLUMNS if extended else []) + (BAYES_COLUMNS if rope is not None else [])
    )
    df = df[columns]
    # All rows share the same n, so the Wilcoxon floor note would repeat per metric: warn once per text.
    notes = list(dict.fromkeys(notes))
    for note in notes:
        warnings.warn(note, stacklevel=2)
    df.attrs["notes"] = notes
    return df


def bayes_correlated(t: np.ndarray, b: np.ndarray, rope: float, runs: int = 1) -> dict[str, float]:
    """Bayesian correlated t-test (Corani & Benavoli 2015) via baycomp.

    baycomp takes ``diff = y - x``, so the baseline goes first to keep "right" = treatment better.
    Its correlation term is fixed at 1/(k-1) (k = folds per run), i.e. n_test/n_train = 1/(k-1).
    """
    from baycomp import CorrelatedTTest  # imported lazily: only needed when a ROPE is given

    if np.all(t == b):
        return {"P(T>B)": float("nan"), "P(rope)": float("nan"), "P(B>T)": float("nan")}
    probs = CorrelatedTTest(np.asarray(b, float), np.asarray(t, float), rope=rope, runs=runs).probs()
    if len(probs) == 2:  # rope == 0: baycomp returns (p_left, p_right)
        left, right = probs
        mid = 0.0
    else:
        left, mid, right = probs
    return {"P(T>B)": float(right), "P(rope)": float(mid), "P(B>T)": float(left)}
