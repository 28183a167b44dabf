"""Which runs an analysis reads (a :class:`~analysis.trials.Sweep`): a sweep's children (``--sweep`` name
or parent run id; by default the latest sweep), or, in an experiment without sweeps or with ``--all-runs``
/ ``--filter``, every run of the experiment that matches the MLflow filter string.

Only calls methods of the client it is given; :func:`get_client` imports MLflow when it is called.
"""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from analysis.trials import Sweep
from erc import contract as C
from erc.contract import search_all

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities import Experiment, Run

RUN_ID = re.compile(r"[0-9a-f]{32}")
LATEST_FIRST = ["attributes.start_time DESC"]


def get_client(tracking_uri: str | None = None) -> MlflowClient:
    """A client for ``tracking_uri``; None falls back to MLFLOW_TRACKING_URI, then MLflow's default."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=tracking_uri)


def _experiment(client: MlflowClient, experiment: str) -> Experiment:
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
            client, exp.experiment_id, C.tag_filter({C.ROLE: C.PARENT_ROLE}), LATEST_FIRST)
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
                         order_by=LATEST_FIRST)
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
