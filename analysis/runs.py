"""Read a finished sweep's trials from MLflow (never from Ray's files) and pair two arms.

Conventions written by the sweep layer: one parent run per sweep (tags ``sweep``, ``role=parent``);
one child run per trial, nested under it (``mlflow.parentRunId``), tagged ``role=trial``,
``stage=grid`` (``stage=search`` runs are hyper-parameter search and ignored), ``fold``, ``fusion``,
``labels``, ``arm``, ``seed``; params ``n_train``/``n_valid``; metrics ``selected/<m>``.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

SELECTED_PREFIX = "selected/"
DEFAULT_METRICS = ["acc", "macro_f1", "micro_f1", "ccc_arousal", "ccc_valence"]
# Known metrics first, in the paper's order; anything else the runs carry follows alphabetically.
METRIC_ORDER = ["acc", "macro_f1", "micro_f1", "auroc", "ccc_arousal", "ccc_valence", "loss"]
FACTOR_ORDER = {"fusion": ["concat", "outer"], "labels": ["hard", "soft", "peakl"]}
RUN_ID = re.compile(r"[0-9a-f]{32}")


class DuplicateRunsError(ValueError):
    """Two FINISHED runs for one (fold, seed, arm): picking one silently would bias the table."""


class MissingArmError(ValueError):
    """The sweep has no finished runs for an arm a comparison needs."""


@dataclass
class Sweep:
    experiment_id: str
    experiment_name: str
    parent_run_id: str
    name: str


@dataclass
class Trials:
    """The FINISHED grid trials of one sweep, one row per run, plus what was left out and why."""

    sweep: Sweep
    runs: pd.DataFrame  # columns: run_id, fold, seed, fusion, labels, arm, n_train, n_valid, <metrics>
    metrics: list[str]
    notes: list[str] = field(default_factory=list)

    @property
    def arms(self) -> list[str]:
        return sort_arms(self.runs)


@dataclass
class Comparison:
    """Two arms paired on (fold, seed), ready for ``paired_table``."""

    factor: str
    treatment: str
    baseline: str
    where: dict[str, str]
    treatment_values: dict[str, dict[Hashable, float]]
    baseline_values: dict[str, dict[Hashable, float]]
    n_train: dict[Hashable, float] | None
    n_test: dict[Hashable, float] | None
    runs: int  # CV repeats (distinct seeds), for baycomp
    treatment_arm: str = ""
    baseline_arm: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        cond = ", ".join(f"{k}={v}" for k, v in self.where.items())
        return f"{self.factor}: {self.treatment} vs {self.baseline}" + (f" ({cond})" if cond else "")

    @property
    def slug(self) -> str:
        parts = [self.factor, self.treatment, "vs", self.baseline] + [
            f"{k}-{v}" for k, v in self.where.items()
        ]
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", "_".join(parts))


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for ``tracking_uri``; None falls back to MLFLOW_TRACKING_URI, then MLflow's default."""
    return MlflowClient(tracking_uri=tracking_uri)


def _quote(value: str) -> str:
    # MLflow's filter grammar takes single- or double-quoted strings without escapes.
    return f'"{value}"' if "'" in value else f"'{value}'"


def _search_all(client: MlflowClient, experiment_id: str, filter_string: str, order_by=None) -> list[Run]:
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(
            [experiment_id],
            filter_string=filter_string,
            run_view_type=ViewType.ACTIVE_ONLY,
            max_results=1000,
            order_by=order_by,
            page_token=token,
        )
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None) -> Sweep:
    """Resolve the sweep's parent run: by run id, by sweep name (tag ``sweep``), or the latest parent."""
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(
            f"experiment {experiment!r} not found at tracking URI {client.tracking_uri}; "
            f"experiments there: {', '.join(names) or 'none'}"
        )
    if sweep is not None and RUN_ID.fullmatch(sweep):
        try:
            run = client.get_run(sweep)
        except Exception:  # noqa: BLE001 - MLflow raises different types per store; fall back to the name
            run = None
        if run is not None:
            if run.info.experiment_id != exp.experiment_id:
                raise ValueError(f"run {sweep} is not in experiment {experiment!r}")
            if run.data.tags.get("role", "parent") != "parent":
                raise ValueError(
                    f"run {sweep} is a {run.data.tags['role']} run, not a sweep's parent run (tag role=parent)"
                )
            return Sweep(exp.experiment_id, exp.name, run.info.run_id, run.data.tags.get("sweep", sweep))
    filt = "tags.role = 'parent'" + (f" and tags.sweep = {_quote(sweep)}" if sweep is not None else "")
    parents = _search_all(client, exp.experiment_id, filt, order_by=["attributes.start_time DESC"])
    if not parents:
        what = f"with tag sweep={sweep!r} " if sweep is not None else ""
        known = sorted(
            {
                r.data.tags.get("sweep", "?")
                for r in _search_all(client, exp.experiment_id, "tags.role = 'parent'")
            }
        )
        raise ValueError(
            f"no parent run (tag role=parent) {what}in experiment {experiment!r}; "
            f"sweeps there: {', '.join(known) or 'none'}"
        )
    run = parents[0]
    if sweep is not None and len(parents) > 1:
        others = ", ".join(r.info.run_id for r in parents[1:])
        warnings.warn(
            f"{len(parents)} parent runs carry sweep={sweep!r}; using the latest ({run.info.run_id}), "
            f"not {others}; pass a run id to choose",
            stacklevel=2,
        )
    return Sweep(exp.experiment_id, exp.name, run.info.run_id, run.data.tags.get("sweep", run.info.run_name))


def _int_or_none(value) -> int | None:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


def _float_or_none(value) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def load_trials(client: MlflowClient, sweep: Sweep) -> Trials:
    """The sweep's FINISHED grid trials. Everything skipped is counted in a warning (and in ``notes``)."""
    children = _search_all(client, sweep.experiment_id, f"tags.mlflow.parentRunId = '{sweep.parent_run_id}'")
    notes: list[str] = []
    rows = []
    not_finished: list[Run] = []
    skipped_stage: Counter = Counter()
    unusable: list[str] = []
    for run in children:
        tags = run.data.tags
        if tags.get("role", "trial") != "trial":
            continue
        stage = tags.get("stage", "grid")
        if stage != "grid":
            skipped_stage[stage] += 1
            continue
        if run.info.status != "FINISHED":
            not_finished.append(run)
            continue
        fold = _int_or_none(tags.get("fold"))
        fusion, labels = tags.get("fusion"), tags.get("labels")
        if fold is None or not fusion or not labels:
            unusable.append(run.info.run_id)
            continue
        row = {
            "run_id": run.info.run_id,
            "fold": fold,
            # Kept as text ("" when untagged) so a missing seed never becomes a NaN that breaks grouping.
            "seed": str(tags.get("seed", "")).strip(),
            "fusion": fusion,
            "labels": labels,
            "arm": tags.get("arm") or f"{fusion}-{labels}",
            "n_train": _float_or_none(run.data.params.get("n_train")),
            "n_valid": _float_or_none(run.data.params.get("n_valid")),
        }
        for key, value in run.data.metrics.items():
            if key.startswith(SELECTED_PREFIX):
                row[key[len(SELECTED_PREFIX) :]] = value
        rows.append(row)
    if not_finished:
        by_status = Counter(r.info.status for r in not_finished)
        detail = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        notes.append(
            f"ignored {len(not_finished)} trial run(s) that are not FINISHED ({detail}): "
            + ", ".join(r.info.run_id for r in not_finished)
        )
    for stage, n in sorted(skipped_stage.items()):
        notes.append(f"ignored {n} run(s) with stage={stage} (only stage=grid trials enter the tables)")
    if unusable:
        notes.append(f"ignored {len(unusable)} run(s) lacking fold/fusion/labels tags: {', '.join(unusable)}")
    base_cols = ["run_id", "fold", "seed", "fusion", "labels", "arm", "n_train", "n_valid"]
    df = pd.DataFrame(rows, columns=None if rows else base_cols)
    metrics = sorted(
        (c for c in df.columns if c not in base_cols),
        key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m),
    )
    if not df.empty:
        dup = df[df.duplicated(["fold", "seed", "arm"], keep=False)]
        if not dup.empty:
            lines = [
                f"fold {fold}, seed {seed}, arm {arm}: runs {', '.join(g['run_id'])}"
                for (fold, seed, arm), g in dup.groupby(["fold", "seed", "arm"], dropna=False)
            ]
            raise DuplicateRunsError(
                "several FINISHED runs for the same (fold, seed, arm) in sweep "
                f"{sweep.name!r}; delete or re-tag the extra ones: " + "; ".join(lines)
            )
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return Trials(sweep=sweep, runs=df, metrics=metrics, notes=notes)


def sort_arms(runs: pd.DataFrame) -> list[str]:
    """Arms in the paper's order (concat before outer; hard, soft, peakl), unknown values last."""

    def rank(factor: str, value: str) -> tuple[int, str]:
        order = FACTOR_ORDER[factor]
        return (order.index(value) if value in order else len(order), value)

    arms = runs[["arm", "fusion", "labels"]].drop_duplicates()
    arms = sorted(
        arms.itertuples(index=False), key=lambda a: (rank("fusion", a.fusion), rank("labels", a.labels))
    )
    return [a.arm for a in arms]


def pair_arms(
    trials: Trials,
    factor: str,
    treatment: str,
    baseline: str,
    where: Mapping[str, str] | None = None,
    metrics: list[str] | None = None,
) -> Comparison:
    """Select two arms that differ in ``factor`` (others fixed by ``where``) and pair them by (fold, seed)."""
    where = dict(where or {})
    df = trials.runs
    if df.empty:
        raise MissingArmError(
            f"sweep {trials.sweep.name!r} (parent run {trials.sweep.parent_run_id}) has no finished grid trials"
        )
    columns = ["fusion", "labels", "arm", "seed", "fold"]
    for col in [factor, *where]:
        if col not in columns:
            raise ValueError(f"unknown factor {col!r}; use one of {', '.join(columns)}")
    if factor in where:
        raise ValueError(f"{factor!r} is the compared factor; it cannot also be fixed by --where")
    metrics = list(metrics) if metrics is not None else [m for m in DEFAULT_METRICS if m in trials.metrics]
    absent = [m for m in metrics if m not in trials.metrics]
    if absent or not metrics:
        raise ValueError(
            f"metric(s) {absent or metrics} not logged as {SELECTED_PREFIX}<metric> by any finished trial; "
            f"available: {', '.join(trials.metrics) or 'none'}"
        )
    sel = df
    for col, value in where.items():
        sel = sel[sel[col].astype(str) == str(value)]
    cond = ", ".join(f"{k}={v}" for k, v in where.items())
    sides = {}
    for role, value in (("treatment", treatment), ("baseline", baseline)):
        side = sel[sel[factor].astype(str) == str(value)]
        if side.empty:
            raise MissingArmError(
                f"no finished grid trials with {factor}={value}"
                + (f" and {cond}" if cond else "")
                + f" in sweep {trials.sweep.name!r} (arms present: {', '.join(trials.arms) or 'none'})"
            )
        crowded = side[side.duplicated(["fold", "seed"], keep=False)]
        if not crowded.empty:
            # Several arms on one side (e.g. every labels arm when comparing fusions without --where):
            # averaging them would compare a mixture, so make the user say which arm is meant.
            arms = sorted(set(crowded["arm"]))
            raise ValueError(
                f"the {role} side ({factor}={value}"
                + (f", {cond}" if cond else "")
                + f") holds several arms per fold: {', '.join(arms)}; fix the other factors with --where"
            )
        sides[role] = side
    seeds = set(sides["treatment"]["seed"]) | set(sides["baseline"]["seed"])
    repeated = len(seeds) > 1

    def key(row) -> Hashable:
        return (int(row.fold), row.seed) if repeated else int(row.fold)

    values = {}
    for role, side in sides.items():
        keys = [key(r) for r in side.itertuples()]
        # NaN (a run that lacks the metric) is kept: paired_table refuses it and names the fold.
        values[role] = {m: dict(zip(keys, side[m].astype(float), strict=True)) for m in metrics}
    notes: list[str] = []
    both = pd.concat([sides["treatment"], sides["baseline"]])
    n_train = n_test = None
    if both["n_train"].notna().all() and both["n_valid"].notna().all():
        # Per fold key, the mean over both arms: the hard-label arm drops tied utterances from
        # training, so its n_train can be smaller than the soft arms' on the same fold.
        grouped = both.assign(k=[key(r) for r in both.itertuples()]).groupby("k")
        n_train = grouped["n_train"].mean().to_dict()
        n_test = grouped["n_valid"].mean().to_dict()
    else:
        k = both["fold"].nunique()
        if k > 1:
            n_train = {key(r): float(k - 1) for r in both.itertuples()}
            n_test = {key(r): 1.0 for r in both.itertuples()}
        notes.append(
            "some runs lack the n_train/n_valid params, so the Nadeau-Bengio correction assumes "
            f"equal folds: n_test/n_train = 1/(k-1) with k = {k}"
        )
    return Comparison(
        factor=factor,
        treatment=str(treatment),
        baseline=str(baseline),
        where={k: str(v) for k, v in where.items()},
        treatment_values=values["treatment"],
        baseline_values=values["baseline"],
        n_train=n_train,
        n_test=n_test,
        runs=len(seeds),
        treatment_arm="/".join(sorted(set(sides["treatment"]["arm"]))),
        baseline_arm="/".join(sorted(set(sides["baseline"]["arm"]))),
        notes=notes,
    )
