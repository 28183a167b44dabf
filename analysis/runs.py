"""Read finished runs from MLflow (never from Ray's files) and pair two arms of them.

The reader needs little of a run (``contract.MINIMAL_RUN``): a fold and the compared factors, as tags
or params, and the metric values (``selected/<m>``, else plain ``<m>``; ``best/<m>`` on request). So it
reads an erc-sweeps sweep (a parent run and its trial runs, see :mod:`erc.contract`) as well as
runs a researcher logged from their own script with ``mlflow.start_run``/``log_param``/``log_metric``.
Where erc-sweeps' role/stage tags are present they are honoured: only ``role=trial`` (or untagged)
runs of ``stage=grid`` (or unstaged) enter the tables.

Which runs are read (a :class:`Sweep`, the selection): a sweep's children (``--sweep`` name or parent
run id; by default the latest sweep), or, in an experiment without sweeps or with ``--all-runs`` /
``--filter``, every run of the experiment that matches the MLflow filter string.
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Run, ViewType

from erc import contract as C

DEFAULT_METRICS = ["acc", "macro_f1", "micro_f1", "ccc_arousal", "ccc_valence"]
# Known metrics first, in the paper's order; anything else the runs carry follows alphabetically.
METRIC_ORDER = ["acc", "macro_f1", "micro_f1", "auroc", "ccc_arousal", "ccc_valence", "loss"]
RUN_ID = re.compile(r"[0-9a-f]{32}")
# Columns of Trials.runs besides the metrics.
BASE_COLUMNS = ["run_id", "fold", "seed", C.FUSION, C.LABELS, C.ARM, C.N_TRAIN, C.N_VALID]
# Tags that identify a run rather than describe its arm: never offered as factors.
_NOT_FACTORS = {C.TRIAL_ID, C.NODE_ID, C.NODE_IP, C.ATTEMPTS, C.FAILED_ATTEMPTS, C.LAST_ERROR, C.RESUMED,
                C.ORPHANED, C.GIT_COMMIT, C.COMMAND, C.FOLD, C.SEED, C.N_TRAIN, C.N_VALID}


class DuplicateRunsError(ValueError):
    """Two FINISHED runs for one (fold, seed, arm): picking one silently would bias the table."""


class MissingArmError(ValueError):
    """The selection has no finished runs for an arm a comparison needs."""


@dataclass
class Sweep:
    """The runs an analysis reads: a sweep's children (``parent_run_id``) and/or an MLflow filter.

    With neither, every run of the experiment.
    """

    experiment_id: str
    experiment_name: str
    parent_run_id: str | None
    name: str
    filter_string: str = ""

    @property
    def description(self) -> str:
        if self.parent_run_id is not None:
            text = f"sweep {self.name!r} (parent run {self.parent_run_id})"
        else:
            text = f"experiment {self.experiment_name!r}"
        return text + (f", runs matching {self.filter_string!r}" if self.filter_string else "")

    @property
    def scope(self) -> str:
        """What the selection is, as an analysis run records it (tag ``analysis_scope``)."""
        return self.filter_string or "all runs"


@dataclass
class Trials:
    """The FINISHED runs of one selection, one row per run, plus what was left out and why."""

    sweep: Sweep
    runs: pd.DataFrame  # columns: BASE_COLUMNS, then one per metric
    metrics: list[str]
    notes: list[str] = field(default_factory=list)
    # Every tag (but MLflow's own) and param of each run, as text, row-aligned with ``runs``: the
    # factors a comparison may name besides fusion and labels.
    attributes: pd.DataFrame | None = None
    values: str = C.DEFAULT_VALUES  # which logged values: "selected" or "best" (contract.VALUE_PREFIXES)

    @property
    def arms(self) -> list[str]:
        return sort_arms(self.runs)

    @property
    def factors(self) -> list[str]:
        """Tags/params whose value differs between the runs: what ``compare --factor`` can name."""
        names = {C.FUSION, C.LABELS, C.ARM} & {c for c in self.runs.columns if self.runs[c].nunique() > 1}
        if self.attributes is not None:
            names |= {c for c in self.attributes.columns
                      if c not in _NOT_FACTORS and self.attributes[c].nunique(dropna=True) > 1}
        return sorted(names)

    def column(self, name: str) -> pd.Series:
        """The values of a factor (tag or param) per run, as text; NaN where a run lacks it."""
        if name in (C.FUSION, C.LABELS, C.ARM, "fold", "seed"):
            col = self.runs[name]
            return pd.Series([None if pd.isna(v) or str(v) == "" else str(v) for v in col],
                             index=col.index, dtype=object)
        if self.attributes is not None and name in self.attributes.columns:
            return self.attributes[name]
        raise ValueError(
            f"unknown factor {name!r}: no selected run carries it as a tag or param; "
            f"factors that vary here: {', '.join(self.factors) or 'none'}"
        )


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
    sizes_logged: bool = True  # n_train/n_test from the runs' params, not assumed equal folds

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


def search_all(client: MlflowClient, experiment_ids: str | Sequence[str], filter_string: str = "",
               order_by: list[str] | None = None) -> list[Run]:
    """Every active run matching ``filter_string`` (MLflow's grammar), page by page."""
    ids = [experiment_ids] if isinstance(experiment_ids, str) else list(experiment_ids)
    runs: list[Run] = []
    token = None
    while True:
        page = client.search_runs(ids, filter_string=filter_string, run_view_type=ViewType.ACTIVE_ONLY,
                                  max_results=1000, order_by=order_by, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            return runs


def run_value(run: Run, key: str) -> str | None:
    """A run's tag ``key``, else its param ``key``: the reader accepts either (tags win)."""
    value = run.data.tags.get(key)
    return value if value is not None else run.data.params.get(key)


def _experiment(client: MlflowClient, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        names = [e.name for e in client.search_experiments()]
        raise ValueError(
            f"experiment {experiment!r} not found at tracking URI {client.tracking_uri}; "
            f"experiments there: {', '.join(names) or 'none'}"
        )
    return exp


def find_sweep(client: MlflowClient, experiment: str, sweep: str | None = None, *,
               filter_string: str | None = None, all_runs: bool = False) -> Sweep:
    """The selection to read.

    ``sweep`` (a parent run id or a ``sweep`` tag value): that sweep's children. Else ``all_runs`` or a
    ``filter_string``: every run of the experiment (matching the filter). Else the latest sweep (parent
    run tagged ``role=parent``), or every run when the experiment has no sweep. A filter narrows a sweep
    too.
    """
    exp = _experiment(client, experiment)
    extra = (filter_string or "").strip()
    if sweep is not None and all_runs:
        raise ValueError("choose either a sweep or all runs, not both")
    if sweep is None:
        parents = [] if (extra or all_runs) else search_all(
            client, exp.experiment_id, C.tag_filter({C.ROLE: C.PARENT_ROLE}), ["attributes.start_time DESC"])
        if not parents:
            return Sweep(exp.experiment_id, exp.name, None, exp.name, extra)
        run = parents[0]
        return Sweep(exp.experiment_id, exp.name, run.info.run_id,
                     run.data.tags.get(C.SWEEP, run.info.run_name), extra)
    if RUN_ID.fullmatch(sweep):
        try:
            run = client.get_run(sweep)
        except Exception:  # noqa: BLE001 - MLflow raises different types per store; fall back to the name
            run = None
        if run is not None:
            if run.info.experiment_id != exp.experiment_id:
                raise ValueError(f"run {sweep} is not in experiment {experiment!r}")
            # A parent run logged by another tool carries no role: any run can hold the children.
            role = run.data.tags.get(C.ROLE, C.PARENT_ROLE)
            if role != C.PARENT_ROLE:
                raise ValueError(
                    f"run {sweep} is a {role} run, not a sweep's parent run (tag {C.ROLE}={C.PARENT_ROLE})"
                )
            return Sweep(exp.experiment_id, exp.name, run.info.run_id,
                         run.data.tags.get(C.SWEEP, run.info.run_name or sweep), extra)
    parents = search_all(client, exp.experiment_id, C.tag_filter({C.ROLE: C.PARENT_ROLE, C.SWEEP: sweep}),
                         order_by=["attributes.start_time DESC"])
    if not parents:
        known = sorted({r.data.tags.get(C.SWEEP, "?")
                        for r in search_all(client, exp.experiment_id, C.tag_filter({C.ROLE: C.PARENT_ROLE}))})
        raise ValueError(
            f"no parent run (tag {C.ROLE}={C.PARENT_ROLE}) with tag {C.SWEEP}={sweep!r} in experiment "
            f"{experiment!r}; sweeps there: {', '.join(known) or 'none'}"
            + ("" if known else " (select runs with --all-runs or --filter instead)")
        )
    run = parents[0]
    if len(parents) > 1:
        others = ", ".join(r.info.run_id for r in parents[1:])
        warnings.warn(
            f"{len(parents)} parent runs carry sweep={sweep!r}; using the latest ({run.info.run_id}), "
            f"not {others}; pass a run id to choose",
            stacklevel=2,
        )
    return Sweep(exp.experiment_id, exp.name, run.info.run_id, run.data.tags.get(C.SWEEP, sweep), extra)


def selected_runs(client: MlflowClient, sweep: Sweep) -> list[Run]:
    """Every active run of the selection, whatever its role, stage or status."""
    clauses = []
    if sweep.parent_run_id is not None:
        clauses.append(C.tag_filter(parent=sweep.parent_run_id))
    if sweep.filter_string:
        clauses.append(sweep.filter_string)
    return search_all(client, sweep.experiment_id, " and ".join(clauses))


@dataclass
class _Sorted:
    """The selection's runs split by what the tables may do with them."""

    trials: list[Run] = field(default_factory=list)  # FINISHED runs that are trials of the grid
    not_finished: list[Run] = field(default_factory=list)
    stages: Counter = field(default_factory=Counter)
    no_fold: list[str] = field(default_factory=list)

    def notes(self) -> list[str]:
        out = []
        if self.not_finished:
            by_status = Counter(r.info.status for r in self.not_finished)
            detail = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
            out.append(f"ignored {len(self.not_finished)} trial run(s) that are not FINISHED ({detail}): "
                       + ", ".join(r.info.run_id for r in self.not_finished))
        for stage, n in sorted(self.stages.items()):
            out.append(f"ignored {n} run(s) with {C.STAGE}={stage} (only {C.STAGE}={C.GRID_STAGE} "
                       "trials enter the tables)")
        if self.no_fold:
            out.append(f"ignored {len(self.no_fold)} run(s) without a fold (tag or param '{C.FOLD}'): "
                       + ", ".join(self.no_fold))
        return out


def _sort_runs(runs: Sequence[Run], with_status: bool = True) -> _Sorted:
    # A run that other runs name as their parent holds a sweep, not a trial (for tools that do not tag roles).
    holders = {r.data.tags.get(C.PARENT_RUN_ID) for r in runs}
    out = _Sorted()
    for run in runs:
        tags = run.data.tags
        role = tags.get(C.ROLE)
        if (role is not None and role != C.TRIAL_ROLE) or (role is None and run.info.run_id in holders):
            continue
        stage = tags.get(C.STAGE)
        if stage is not None and stage != C.GRID_STAGE:
            out.stages[stage] += 1
        elif with_status and run.info.status != "FINISHED":
            out.not_finished.append(run)
        elif _int_or_none(run_value(run, C.FOLD)) is None:
            out.no_fold.append(run.info.run_id)
        else:
            out.trials.append(run)
    return out


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


def metric_values(run: Run, values: str = C.DEFAULT_VALUES) -> dict[str, float]:
    """The run's reported values by metric name: ``<prefix><m>``; for ``selected``, else plain ``<m>``."""
    if values not in C.VALUE_PREFIXES:
        raise ValueError(f"values must be one of {', '.join(C.VALUE_PREFIXES)}, not {values!r}")
    prefix = C.VALUE_PREFIXES[values]
    metrics = run.data.metrics
    out = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
    if values == C.DEFAULT_VALUES:
        for key, value in metrics.items():
            if not key.startswith(C.KNOWN_PREFIXES):
                out.setdefault(key, value)
    return out


def load_trials(client: MlflowClient, sweep: Sweep, values: str = C.DEFAULT_VALUES) -> Trials:
    """The selection's FINISHED grid trials. Everything skipped is counted in a warning (and in ``notes``).

    ``values``: ``selected`` (every metric at one chosen epoch; plain ``<m>`` for runs logged without
    the prefix) or ``best`` (``best/<m>``, each metric's own best epoch: optimistic).
    """
    if values not in C.VALUE_PREFIXES:
        raise ValueError(f"values must be one of {', '.join(C.VALUE_PREFIXES)}, not {values!r}")
    sorted_ = _sort_runs(selected_runs(client, sweep))
    notes = sorted_.notes()
    rows, attributes = [], []
    for run in sorted_.trials:
        tags, params = run.data.tags, run.data.params
        fusion, labels = run_value(run, C.FUSION), run_value(run, C.LABELS)
        row = {
            "run_id": run.info.run_id,
            "fold": _int_or_none(run_value(run, C.FOLD)),
            # Kept as text ("" when absent) so a missing seed never becomes a NaN that breaks grouping.
            "seed": str(run_value(run, C.SEED) or "").strip(),
            C.FUSION: fusion,
            C.LABELS: labels,
            C.ARM: run_value(run, C.ARM) or (C.arm_name(fusion, labels) if fusion and labels else ""),
            C.N_TRAIN: _float_or_none(run_value(run, C.N_TRAIN)),
            C.N_VALID: _float_or_none(run_value(run, C.N_VALID)),
        }
        for name, value in metric_values(run, values).items():
            if name not in row:  # a metric named like a column (e.g. "fold") is not analysable
                row[name] = value
        rows.append(row)
        attributes.append({**params, **{k: v for k, v in tags.items() if not k.startswith("mlflow.")}})
    df = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    metrics = sorted(
        (c for c in df.columns if c not in BASE_COLUMNS),
        key=lambda m: (METRIC_ORDER.index(m) if m in METRIC_ORDER else len(METRIC_ORDER), m),
    )
    armed = df[df[C.ARM].astype(str) != ""] if not df.empty else df
    dup = armed[armed.duplicated(["fold", "seed", C.ARM], keep=False)] if not armed.empty else armed
    if not dup.empty:
        lines = [
            f"fold {fold}, seed {seed}, arm {arm}: runs {', '.join(g['run_id'])}"
            for (fold, seed, arm), g in dup.groupby(["fold", "seed", C.ARM], dropna=False)
        ]
        raise DuplicateRunsError(
            f"several FINISHED runs for the same (fold, seed, arm) in {sweep.description}; "
            "delete or re-tag the extra ones: " + "; ".join(lines)
        )
    for note in notes:
        warnings.warn(note, stacklevel=2)
    attrs = pd.DataFrame(attributes, index=df.index, dtype=object) if rows else pd.DataFrame()
    return Trials(sweep=sweep, runs=df, metrics=metrics, notes=notes, attributes=attrs, values=values)


def find_trial_run(client: MlflowClient, experiment: str, arm: str, fold: int, sweep: str | None = None,
                   seed: int | str | None = None) -> tuple[Sweep, Run]:
    """The one FINISHED grid trial run for (arm, fold[, seed]); anything ambiguous or absent is a clear error."""
    sw = find_sweep(client, experiment, sweep)
    sorted_ = _sort_runs(selected_runs(client, sw), with_status=False)

    def arm_of(run: Run) -> str:
        fusion, labels = run_value(run, C.FUSION), run_value(run, C.LABELS)
        return run_value(run, C.ARM) or (C.arm_name(fusion, labels) if fusion and labels else "?")

    trials = sorted_.trials
    match = [r for r in trials if arm_of(r) == arm and _int_or_none(run_value(r, C.FOLD)) == int(fold)]
    if seed is not None:
        match = [r for r in match if str(run_value(r, C.SEED) or "").strip() == str(seed)]
    if not match:
        have = sorted({(arm_of(r), str(run_value(r, C.FOLD))) for r in trials})
        listing = ", ".join(f"{a} fold {f}" for a, f in have) or "none"
        what = f"arm {arm!r}, fold {fold}" + (f", seed {seed}" if seed is not None else "")
        raise ValueError(f"no grid trial with {what} in {sw.description}; trials there: {listing}")
    finished = [r for r in match if r.info.status == "FINISHED"]
    if not finished:
        states = ", ".join(f"{r.info.run_id} ({r.info.status})" for r in match)
        raise ValueError(f"the {arm} fold {fold} trial of {sw.description} has not FINISHED: {states}")
    if len(finished) > 1:
        seeds = ", ".join(f"{r.info.run_id} (seed {run_value(r, C.SEED) or '?'})" for r in finished)
        raise ValueError(f"{len(finished)} finished {arm} fold {fold} trials in {sw.description}: {seeds}; "
                         "choose one with --seed")
    return sw, finished[0]


def sort_arms(runs: pd.DataFrame) -> list[str]:
    """Arms in the paper's order (concat before outer; hard, soft, peakl), unknown values last."""

    def rank(factor: str, value) -> tuple[int, str]:
        order = C.FACTOR_ORDER[factor]
        value = "" if pd.isna(value) else str(value)
        return (order.index(value) if value in order else len(order), value)

    arms = runs[[C.ARM, C.FUSION, C.LABELS]].drop_duplicates(C.ARM)
    arms = arms[arms[C.ARM].astype(str) != ""]
    ranked = sorted(arms.itertuples(index=False),
                    key=lambda a: (rank(C.FUSION, a[1]), rank(C.LABELS, a[2]), str(a[0])))
    return [a[0] for a in ranked]


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
    where = dict(where or {})
    df = trials.runs
    what = trials.sweep.description
    if df.empty:
        raise MissingArmError(f"{what} has no finished grid trials (each needs {C.MINIMAL_RUN})")
    if factor in where:
        raise ValueError(f"{factor!r} is the compared factor; it cannot also be fixed by --where")
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
        keep &= columns[col] == str(value)
    sel = df[keep]
    cond = ", ".join(f"{k}={v}" for k, v in where.items())
    sides = {}
    for role, value in (("treatment", treatment), ("baseline", baseline)):
        side = sel[columns[factor][keep] == str(value)]
        if side.empty:
            present = sorted(set(columns[factor].dropna()))
            raise MissingArmError(
                f"no finished grid trials with {factor}={value}"
                + (f" and {cond}" if cond else "")
                + f" in {what} ({factor} values present: {', '.join(present) or 'none'}; "
                + f"arms: {', '.join(trials.arms) or 'none'})"
            )
        crowded = side[side.duplicated(["fold", "seed"], keep=False)]
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
    seeds = set(sides["treatment"]["seed"]) | set(sides["baseline"]["seed"])
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
        k = both["fold"].nunique()
        if k > 1:
            n_train = {key(r): float(k - 1) for r in both.itertuples()}
            n_test = {key(r): 1.0 for r in both.itertuples()}
        notes.append(
            f"some runs lack the {C.N_TRAIN}/{C.N_VALID} params, so the Nadeau-Bengio correction assumes "
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
        treatment_arm=arm_label(sides["treatment"], str(treatment)),
        baseline_arm=arm_label(sides["baseline"], str(baseline)),
        notes=notes,
        sizes_logged=not notes,
    )
