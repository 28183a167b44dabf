"""Read finished runs from MLflow (never from Ray's files) into :class:`~analysis.trials.Trials`.

The reader needs little of a run (``contract.MINIMAL_RUN``): a fold and the compared factors, as tags
or params, and the metric values (``selected/<m>``, else plain ``<m>``; ``best/<m>`` on request). So it
reads an erc-sweeps sweep (a parent run and its trial runs, see :mod:`erc.contract`) as well as
runs a researcher logged from their own script with ``mlflow.start_run``/``log_param``/``log_metric``.
Where erc-sweeps' role/stage tags are present they are honoured: only ``role=trial`` (or untagged)
runs of ``stage=grid`` (or unstaged) enter the tables.
"""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pandas as pd

from analysis.selection import find_sweep, selected_runs
from analysis.trials import BASE_COLUMNS, SIZE_COLUMNS, Sweep, Trials, arm_of, metric_order
from erc import contract as C

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Run

FINISHED = "FINISHED"  # MLflow's RunStatus name of a run that ended well


class DuplicateRunsError(ValueError):
    """Two FINISHED runs for one (fold, seed, arm): picking one silently would bias the table."""


def run_value(run: Run, key: str) -> str | None:
    """A run's tag ``key``, else its param ``key``: the reader accepts either (tags win)."""
    value = run.data.tags.get(key)
    return value if value is not None else run.data.params.get(key)


def run_arm(run: Run) -> str:
    """The run's arm (:func:`analysis.trials.arm_of` of its tags or params)."""
    return arm_of(run_value(run, C.ARM), run_value(run, C.FUSION), run_value(run, C.LABELS))


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
            out.append(f"ignored {len(self.not_finished)} trial run(s) that are not {FINISHED} ({detail}): "
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
        elif with_status and run.info.status != FINISHED:
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


def _check_values(values: str) -> None:
    if values not in C.VALUE_PREFIXES:
        raise ValueError(f"values must be one of {', '.join(C.VALUE_PREFIXES)}, not {values!r}")


def metric_values(run: Run, values: str = C.DEFAULT_VALUES) -> dict[str, float]:
    """The run's reported values by metric name: ``<prefix><m>``; for ``selected``, else plain ``<m>``."""
    _check_values(values)
    prefix = C.VALUE_PREFIXES[values]
    metrics = run.data.metrics
    out = {k[len(prefix):]: v for k, v in metrics.items() if k.startswith(prefix)}
    if values == C.DEFAULT_VALUES:
        for key, value in metrics.items():
            if not key.startswith(C.KNOWN_PREFIXES):
                out.setdefault(key, value)
    return out


def load_trials(client: MlflowClient, sweep: Sweep, values: str = C.DEFAULT_VALUES,
                runs: Sequence[Run] | None = None) -> Trials:
    """The selection's FINISHED grid trials. Everything skipped is counted in a warning (and in ``notes``).

    ``values``: ``selected`` (every metric at one chosen epoch; plain ``<m>`` for runs logged without
    the prefix) or ``best`` (``best/<m>``, each metric's own best epoch: optimistic).
    ``runs``: the selection's runs when already read (``Trials.source`` of another set of values).
    """
    _check_values(values)
    source = tuple(selected_runs(client, sweep) if runs is None else runs)
    sorted_ = _sort_runs(source)
    notes = sorted_.notes()
    rows, attributes = [], []
    for run in sorted_.trials:
        tags, params = run.data.tags, run.data.params
        row = {
            "run_id": run.info.run_id,
            C.FOLD: _int_or_none(run_value(run, C.FOLD)),
            # Kept as text ("" when absent) so a missing seed never becomes a NaN that breaks grouping.
            C.SEED: str(run_value(run, C.SEED) or "").strip(),
            C.FUSION: run_value(run, C.FUSION),
            C.LABELS: run_value(run, C.LABELS),
            C.ARM: run_arm(run),
            C.N_TRAIN: _float_or_none(run_value(run, C.N_TRAIN)),
            C.N_VALID: _float_or_none(run_value(run, C.N_VALID)),
        }
        for name, value in metric_values(run, values).items():
            if name not in row:  # a metric named like a column (e.g. "fold") is not analysable
                row[name] = value
        row.update({k: run.data.metrics[k] for k in SIZE_COLUMNS if k in run.data.metrics})
        rows.append(row)
        attributes.append({**params, **{k: v for k, v in tags.items() if not k.startswith("mlflow.")}})
    df = pd.DataFrame(rows, columns=None if rows else BASE_COLUMNS)
    metrics = metric_order(c for c in df.columns if c not in BASE_COLUMNS and c not in SIZE_COLUMNS)
    armed = df[df[C.ARM].astype(str) != ""] if not df.empty else df
    key = [C.FOLD, C.SEED, C.ARM]
    dup = armed[armed.duplicated(key, keep=False)] if not armed.empty else armed
    if not dup.empty:
        lines = [
            f"fold {fold}, seed {seed}, arm {arm}: runs {', '.join(g['run_id'])}"
            for (fold, seed, arm), g in dup.groupby(key, dropna=False)
        ]
        raise DuplicateRunsError(
            f"several {FINISHED} runs for the same (fold, seed, arm) in {sweep.description}; "
            "delete or re-tag the extra ones: " + "; ".join(lines)
        )
    for note in notes:
        warnings.warn(note, stacklevel=2)
    attrs = pd.DataFrame(attributes, index=df.index, dtype=object) if rows else pd.DataFrame()
    return Trials(sweep=sweep, runs=df, metrics=metrics, notes=notes, attributes=attrs, values=values, source=source)


def find_trial_run(client: MlflowClient, experiment: str, arm: str, fold: int, sweep: str | None = None,
                   seed: int | str | None = None) -> tuple[Sweep, Run]:
    """The one FINISHED grid trial run for (arm, fold[, seed]); anything ambiguous or absent is a clear error."""
    sw = find_sweep(client, experiment, sweep)
    trials = _sort_runs(selected_runs(client, sw), with_status=False).trials

    def arm_or_unknown(run: Run) -> str:
        return run_arm(run) or "?"

    match = [r for r in trials if arm_or_unknown(r) == arm and _int_or_none(run_value(r, C.FOLD)) == int(fold)]
    if seed is not None:
        match = [r for r in match if str(run_value(r, C.SEED) or "").strip() == str(seed)]
    if not match:
        have = sorted({(arm_or_unknown(r), str(run_value(r, C.FOLD))) for r in trials})
        listing = ", ".join(f"{a} fold {f}" for a, f in have) or "none"
        what = f"arm {arm!r}, fold {fold}" + (f", seed {seed}" if seed is not None else "")
        raise ValueError(f"no grid trial with {what} in {sw.description}; trials there: {listing}")
    finished = [r for r in match if r.info.status == FINISHED]
    if not finished:
        states = ", ".join(f"{r.info.run_id} ({r.info.status})" for r in match)
        raise ValueError(f"the {arm} fold {fold} trial of {sw.description} has not FINISHED: {states}")
    if len(finished) > 1:
        seeds = ", ".join(f"{r.info.run_id} (seed {run_value(r, C.SEED) or '?'})" for r in finished)
        raise ValueError(f"{len(finished)} finished {arm} fold {fold} trials in {sw.description}: {seeds}; "
                         "choose one with --seed")
    return sw, finished[0]
