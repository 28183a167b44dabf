"""The words of a report: each table's introduction, one sentence saying what the numbers say, and the
footnotes that say what every column is."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from analysis.folds import key_label
from analysis.formatting import fmt_value
from analysis.stats import SEED_COLUMNS
from analysis.tables import TableResult, mean_differences
from erc import contract as C

ALPHA = 0.05
# What the tables' numbers are, per contract.VALUE_PREFIXES key.
VALUES_LABEL = {
    "selected": "selected-epoch metrics (every metric at the one epoch chosen by select_metric on the dev split)",
    "oracle": "oracle-epoch metrics (oracle/<metric>: the epoch chosen on the reported fold itself: optimistic)",
    "best": "per-metric best epochs (best/<metric>, the paper's per-metric maxima: optimistic)",
}
ORACLE_VALUES_NOTE = (
    "Values are oracle/<metric>: every metric at the one epoch select_metric picks on the validation fold "
    "itself, the fold the table reports (what the original code and the paper's protocol report). They are "
    "optimistic: the default (selected/<metric>) chooses the epoch on a dev split of the training sessions."
)
BEST_VALUES_NOTE = (
    "Values are best/<metric>: each metric at its own best validation epoch, the paper's per-metric maxima. "
    "They are optimistic: the epoch is chosen on the validation fold itself, separately for each metric, so "
    "no single model reaches all of them. The default (selected/<metric>) reports every metric at one epoch."
)


def table_intro(res: TableResult) -> str:
    """What the table compares, over which folds, and which tables follow."""
    c = res.comparison
    folds = ", ".join(key_label(k) for k in res.keys)
    text = (
        f"Treatment {c.treatment_arm} vs baseline {c.baseline_arm}: differences are treatment − baseline "
        f"over {res.n_pairs} paired folds ({folds}); a positive T favours {c.treatment}."
    )
    if res.values != C.DEFAULT_VALUES:
        text += f" Values: {VALUES_LABEL.get(res.values, res.values)}."
    if len(res.table.columns) > len(SEED_COLUMNS):
        text += " First the paper's table (pingouin's paired t-test), then the corrections"
        if res.ratio is not None and "T (NB)" in res.table.columns:
            text += f" (Nadeau–Bengio with n_test/n_train = {res.ratio:.4g})"
        text += "."
    return text


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else f"{p:.2g}"


def _signed(v: float) -> str:
    return "n/a" if math.isnan(v) else ("+" if v >= 0 else "−") + fmt_value(abs(v))


def in_words(res: TableResult, alpha: float = ALPHA) -> str:
    """One sentence: each metric's mean difference with its CI, and what holds after the correction."""
    c, t = res.comparison, res.table
    corrected = "p-val (NB, Holm)" in t.columns
    ci_col = "CI95% (NB)" if corrected else "CI95%"
    diffs = mean_differences(res)
    parts = []
    for m in t.index:
        lo, hi = t.loc[m, ci_col]
        parts.append(f"{m} {_signed(diffs[m])} ({_signed(lo)} to {_signed(hi)})")
    head = (f"In words: {c.treatment_arm} − {c.baseline_arm}, mean difference "
            f"({'Nadeau–Bengio ' if corrected else ''}95 % CI): " + ", ".join(parts) + ". ")
    naive = t["p-val"].astype(float)
    first = t.index[0]
    if not corrected:
        sig = [m for m in t.index if naive[m] < alpha]
        if not sig:
            return head + (f"Not significant on any metric (the paper's uncorrected test; {first}: "
                           f"T {t.loc[first, 'T']:.3g}, p {_p(naive[first])}).")
        rest = [m for m in t.index if m not in sig]
        return head + ("With the paper's uncorrected test, p < 0.05 for " + _listing(sig, naive)
                       + (f"; not for {_listing(rest, naive)}" if rest else "") + ".")
    adj = t["p-val (NB, Holm)"].astype(float)
    holds = [m for m in t.index if adj[m] < alpha]
    fails = [m for m in t.index if m not in holds]
    family = f"Holm across the {len(t)} metrics" if len(t) > 1 else "Holm"
    if not holds and not (naive < alpha).any():
        return head + (f"Not significant on any metric, even uncorrected ({first}: T {t.loc[first, 'T']:.3g}, "
                       f"p {_p(naive[first])}).")
    if not holds:
        sig = [m for m in t.index if naive[m] < alpha]
        return head + (f"Uncorrected p < 0.05 for {_listing(sig, naive)}, but after the Nadeau–Bengio "
                       f"correction and {family} it holds for none (smallest p {_p(adj.min())}).")
    text = f"After the Nadeau–Bengio correction and {family}, it holds for "
    if not fails:
        return head + text + f"every metric (p ≤ {_p(adj.max())})."
    lost = [f"{m} (p {_p(adj[m])}" + (f"; uncorrected {_p(naive[m])}" if naive[m] < alpha else "") + ")"
            for m in fails]
    return head + text + _listing(holds, adj) + " but not for " + ", ".join(lost) + "."


def _listing(metrics: Sequence[str], p: pd.Series) -> str:
    return ", ".join(f"{m} (p {_p(p[m])})" for m in metrics)


def footnotes(extended: bool, rope: float | None, repeated: bool, values: str = C.DEFAULT_VALUES,
              sizes_logged: bool = True) -> list[str]:
    notes = {"best": [BEST_VALUES_NOTE], "oracle": [ORACLE_VALUES_NOTE]}.get(values, [])
    notes += [
        (
            "T, dof, alternative, p-val, CI95% (of the mean difference), cohen-d, BF10 and power are "
            "pingouin.ttest(treatment, baseline, paired=True), the paper's test, shown under the paper's "
            "column names (pingouin ≥ 0.6 calls three of them p_val, CI95, cohen_d)."
        ),
        (
            "cohen-d is pingouin's paired effect size d_av = mean difference / sqrt((sd_T² + sd_B²)/2), built "
            "from the arms' SDs, which between-fold difficulty inflates; it is not d_z. pingouin's power is "
            "post-hoc power that feeds this d_av into the paired formula meant for d_z (noncentrality d·√n), "
            "and, being a function of p, adds nothing to it. BF10 (JZS, r = 0.707) uses the naive T."
        ),
    ]
    if extended:
        notes += [
            "CV folds share most of their training data, so the naive paired t-test overstates "
            "significance. T (NB), p-val (NB) and CI95% (NB) are the Nadeau & Bengio (2003) corrected "
            "resampled t-test: variance factor 1/n + n_test/n_train instead of 1/n, n − 1 dof, with "
            + ("n_test/n_train from the fold sizes logged with the runs (mean n_valid / mean n_train)"
               if sizes_logged else "n_test/n_train = 1/(k − 1), equal folds (no fold sizes were logged or given)")
            + (
                "; with several seeds this is Bouckaert & Frank's (2004) corrected repeated k-fold test."
                if repeated
                else "."
            ),
            (
                "cohen-dz = mean / sd of the paired differences (= T/√n), the effect the paired test sees. "
                "min-dz80 is the smallest d_z the naive test detects with 80 % power at α = 0.05 and this n; "
                "min-dz80 (NB) the same for the corrected test (× sqrt(1 + n·n_test/n_train))."
            ),
            (
                "p-val (Wilcoxon) is the exact Wilcoxon signed-rank test (pingouin.wilcoxon); with n pairs it "
                "cannot go below 2/2^n two-sided (0.0625 for 5 folds), so it cannot reach 0.05 there."
            ),
            (
                "p-val (Holm) and p-val (NB, Holm) are Holm-adjusted across the metrics of the table "
                "(pingouin.multicomp), from the naive and the NB p-values."
            ),
        ]
    if rope is not None:
        notes.append(
            f"P(T>B), P(rope), P(B>T): Bayesian correlated t-test (Corani & Benavoli 2015, "
            f"baycomp.CorrelatedTTest) with ROPE ±{rope:g}; baycomp fixes its correlation term at "
            "n_test/n_train = 1/(k − 1)."
        )
    return notes
