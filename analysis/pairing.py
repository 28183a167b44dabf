"""Pair two arms of :class:`~analysis.trials.Trials` fold by fold: a :class:`Comparison`, ready for
``analysis.stats.paired_table``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from analysis.options import DEFAULT_METRICS, Contrast
from analysis.trials import Trials
from erc import contract as C


class MissingArmError(ValueError):
    """The selection has no finished runs for an arm a comparison needs."""


@dataclass(frozen=True, kw_only=True)
class Comparison(Contrast):
    """Two arms paired on (fold, seed), ready for ``paired_table``."""

    treatment_values: dict[str, dict[Hashable, float]]
    baseline_values: dict[str, dict[Hashable, float]]
    n_train: dict[Hashable, float] | None
    n_test: dict[Hashable, float] | None
    runs: int  # CV repeats (distinct seeds), for baycomp
    treatment_arm: str = ""
    baseline_arm: str = ""
    notes: list[str] = field(default_factory=list)
    sizes_logged: bool = True  # n_train/n_test from the runs' params, not assumed equal folds


def pair_arms(
    trials: Trials,
    factor: str,
    treatment: str,
    baseline: str,
    where: Mapping[str, str] | None = None,
    metrics: list[str] | None = None,
) -> Comparison:
    """Select two arms that differ in ``factor`` (others fixed by ``where``) and pair them by (fold, seed).

    ``factor`` and the keys of ``where`` are any tag or param of the runs (fusion, labels, arm, or a
    researcher's own, e.g. optimizer).
    """
    return pair(trials, Contrast(factor=factor, treatment=treatment, baseline=baseline, where=dict(where or {})),
                metrics)


def pair(trials: Trials, contrast: Contrast, metrics: list[str] | None = None) -> Comparison:
    """:func:`pair_arms` of a :class:`~analysis.options.Contrast`."""
    factor, where = contrast.factor, contrast.where
    df = trials.runs
    what = trials.sweep.description
    if df.empty:
        raise MissingArmError(f"{what} has no finished grid trials (each needs {C.MINIMAL_RUN})")
    columns = {col: trials.column(col) for col in [factor, *where]}
    prefix = C.VALUE_PREFIXES[trials.values]
    if metrics is None:
        metrics = [m for m in DEFAULT_METRICS if m in trials.metrics] or list(trials.metrics)
    metrics = list(metrics)
    absent = [m for m in metrics if m not in trials.metrics]
    if absent or not metrics:
        logged = f"{prefix}<metric>" + (" or <metric>" if trials.values == C.DEFAULT_VALUES else "")
        raise ValueError(
            f"metric(s) {absent or metrics} not logged as {logged} by any finished trial; "
            f"available: {', '.join(trials.metrics) or 'none'}"
        )
    keep = pd.Series(True, index=df.index)
    for col, value in where.items():
        keep &= columns[col] == value
    sel = df[keep]
    cond = contrast.condition
    sides = {}
    for role, value in (("treatment", contrast.treatment), ("baseline", contrast.baseline)):
        side = sel[columns[factor][keep] == value]
        if side.empty:
            present = sorted(set(columns[factor].dropna()))
            raise MissingArmError(
                f"no finished grid trials with {factor}={value}"
                + (f" and {cond}" if cond else "")
                + f" in {what} ({factor} values present: {', '.join(present) or 'none'}; "
                + f"arms: {', '.join(trials.arms) or 'none'})"
            )
        crowded = side[side.duplicated([C.FOLD, C.SEED], keep=False)]
        if not crowded.empty:
            # Several arms on one side (e.g. every labels arm when comparing fusions without --where):
            # averaging them would compare a mixture, so make the user say which arm is meant.
            arms = sorted(set(crowded[C.ARM]) - {""})
            held = (f"several arms per fold: {', '.join(arms)}" if len(arms) > 1
                    else f"several runs per fold: {', '.join(crowded['run_id'])}")
            raise ValueError(
                f"the {role} side ({factor}={value}" + (f", {cond}" if cond else "") + f") holds {held}; "
                f"fix the other factors with --where (factors that vary: {', '.join(trials.factors)}) "
                "or narrow the runs with --filter"
            )
        sides[role] = side
    seeds = set(sides["treatment"][C.SEED]) | set(sides["baseline"][C.SEED])
    repeated = len(seeds) > 1

    def key(row) -> Hashable:
        return (int(row.fold), row.seed) if repeated else int(row.fold)

    def arm_label(side: pd.DataFrame, value: str) -> str:
        arms = sorted(set(side[C.ARM]) - {""})
        return "/".join(arms) if arms else ", ".join([f"{factor}={value}", *([cond] if cond else [])])

    values = {}
    for role, side in sides.items():
        keys = [key(r) for r in side.itertuples()]
        # NaN (a run that lacks the metric) is kept: paired_table refuses it and names the fold.
        values[role] = {m: dict(zip(keys, side[m].astype(float), strict=True)) for m in metrics}
    notes: list[str] = []
    both = pd.concat([sides["treatment"], sides["baseline"]])
    n_train = n_test = None
    if both[C.N_TRAIN].notna().all() and both[C.N_VALID].notna().all():
        # Per fold key, the mean over both arms: the hard-label arm drops tied utterances from
        # training, so its n_train can be smaller than the soft arms' on the same fold.
        grouped = both.assign(k=[key(r) for r in both.itertuples()]).groupby("k")
        n_train = grouped[C.N_TRAIN].mean().to_dict()
        n_test = grouped[C.N_VALID].mean().to_dict()
    else:
        k = both[C.FOLD].nunique()
        if k > 1:
            n_train = {key(r): float(k - 1) for r in both.itertuples()}
            n_test = {key(r): 1.0 for r in both.itertuples()}
        notes.append(
            f"some runs lack the {C.N_TRAIN}/{C.N_VALID} params, so the Nadeau-Bengio correction assumes "
            f"equal folds: n_test/n_train = 1/(k-1) with k = {k}"
        )
    return Comparison(
        factor=factor,
        treatment=contrast.treatment,
        baseline=contrast.baseline,
        where=where,
        treatment_values=values["treatment"],
        baseline_values=values["baseline"],
        n_train=n_train,
        n_test=n_test,
        runs=len(seeds),
        treatment_arm=arm_label(sides["treatment"], contrast.treatment),
        baseline_arm=arm_label(sides["baseline"], contrast.baseline),
        notes=notes,
        sizes_logged=not notes,
    )
