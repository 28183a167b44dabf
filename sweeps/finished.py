"""A finished sweep's rerun, and the report a grid sweep ends with (imports MLflow, never Ray or torch).

Rerunning the command of a sweep whose every trial finished has nothing to run: Tune would restore
its experiment, start no trial, and the report would be built from MLflow again. The store alone says
whether that is the case, so the rerun reprints the report from it without starting Ray or loading
torch (seconds instead of tens of seconds). It is the case only when the sweep's parent run is
FINISHED (its driver ended it after every trial completed, none failed, nothing was interrupted) *and*
every grid trial the settings ask for — each fold × fusion × labels × seed — has a FINISHED run under
it. Anything else (an interrupted sweep, a failed trial, a grid the settings extend, a store the
driver died in) takes the normal path, which resumes exactly as before.

Faster still, without MLflow: a sweep that finished cleanly leaves ``reports/<sweep>/finished.json``
beside its report (the grid it ran, the report text it printed, and the size and modification time
of its SQLite store's files once everything was written). While the store's files are untouched —
SQLite changes them on any write: a deleted or added run, a tag set in the UI — that report is still
what the store says, so the rerun prints it (well under a second). Anything else, and any server
store (it cannot be checked this way), asks MLflow as above.
"""

from __future__ import annotations

import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

from erc import contract as C
from erc.atomic import write_atomic
from erc.vocab import REPORTS_DIR
from sweeps.settings import SweepSettings
from sweeps.store import store_uri


@dataclass(frozen=True)
class FinishedSweep:
    uri: str
    parent_run_id: str
    trials: int


def grid_keys(settings: SweepSettings) -> set[tuple[str, str, str, str]]:
    """(fold, fusion, labels, seed) of every grid trial, as the trial runs' params spell them."""
    seeds = settings.seeds if settings.repeats > 1 else [settings.seed]
    return {(str(fold), fusion, labels, str(seed))
            for seed, labels, fusion, fold in itertools.product(seeds, settings.labels, settings.fusions, settings.folds)}


def finished_sweep(settings: SweepSettings, sweep: str) -> FinishedSweep | None:
    """The sweep, when the store shows it finished with every grid trial the settings ask for; else None."""
    from sweeps.store import check_reachable, open_store

    uri = store_uri(settings)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        return None  # a fresh store: nothing has run (and nothing to import MLflow for)
    check_reachable(uri)
    client = open_store(uri)
    experiment = client.get_experiment_by_name(settings.experiment)
    if experiment is None or experiment.lifecycle_stage != "active":
        return None
    parents = C.search_all(client, experiment.experiment_id, C.tag_filter({C.SWEEP: sweep, C.ROLE: C.PARENT_ROLE}))
    if len(parents) != 1 or parents[0].info.status != "FINISHED":
        return None
    parent = parents[0].info.run_id
    runs = C.search_all(client, experiment.experiment_id,
                        C.tag_filter({C.SWEEP: sweep, C.ROLE: C.TRIAL_ROLE, C.STAGE: C.GRID_STAGE},
                                     parent=parent, status="FINISHED"))
    done = {tuple(r.data.params.get(k) for k in (C.FOLD, C.FUSION, C.LABELS, C.SEED)) for r in runs}
    wanted = grid_keys(settings)
    if not wanted <= done:
        return None
    return FinishedSweep(uri, parent, len(wanted))


def print_report(settings: SweepSettings, sweep: str, uri: str, *, log_to_mlflow: bool = True) -> str:
    """The sweep's report from MLflow: printed, saved under the cache's reports, logged to the parent run
    (unless ``log_to_mlflow`` is false). Returns the printed text."""
    # analysis at the end of a sweep only: importing the sweep layer never imports analysis
    from analysis.report import sweep_report

    reports = settings.cache_dir / REPORTS_DIR / sweep
    with warnings.catch_warnings():  # everything the report warns about is in its text, printed below
        warnings.simplefilter("ignore")
        texts = [sweep_report(settings.experiment, sweep=sweep, tracking_uri=uri, out_dir=reports,
                              log_to_mlflow=log_to_mlflow, control=settings.control)]
        if settings.protocol == "paper":  # the paper's tables: each metric's own best epoch (labelled optimistic)
            texts.append(sweep_report(settings.experiment, sweep=sweep, tracking_uri=uri, out_dir=reports / "best",
                                      values="best", log_to_mlflow=log_to_mlflow, control=settings.control))
    texts.append(browse_line(uri))
    print(texts[-1])
    return "\n".join(texts)


def browse_line(uri: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"\nBrowse the runs: {uri}"
    return f"\nBrowse the runs: mlflow ui --backend-store-uri {uri}"


def store_files(uri: str) -> dict[str, list[int]] | None:
    """[modification time (ns), size, SQLite's file change counter] of a SQLite store's files (its
    write-ahead log too, if any); None for a server store. The counter (bytes 24-27 of the database
    header) goes up with every committed write, even one within the file system's timestamp tick."""
    if not uri.startswith("sqlite:///"):
        return None
    db = Path(uri.removeprefix("sqlite:///"))
    files = {}
    for path in (db, db.with_name(f"{db.name}-wal")):
        if path.exists():
            with path.open("rb") as f:
                counter = int.from_bytes(f.read(28)[24:28], "big")
            files[path.name] = [path.stat().st_mtime_ns, path.stat().st_size, counter]
    return files


def marker_path(settings: SweepSettings, sweep: str) -> Path:
    return settings.cache_dir / REPORTS_DIR / sweep / C.FINISHED_MARKER


def record_finished(settings: SweepSettings, sweep: str, uri: str, parent_run_id: str, report: str) -> None:
    """After a sweep finished cleanly and every write to its store is done: what its rerun may print
    without asking MLflow (nothing for a server store)."""
    files = store_files(uri)
    if files is None:
        return
    write_atomic(marker_path(settings, sweep), json.dumps({
        "uri": uri, "parent_run_id": parent_run_id, "grid": sorted(map(list, grid_keys(settings))),
        "store": files, "report": report}, indent=1))


def recorded_report(settings: SweepSettings, sweep: str, uri: str) -> dict | None:
    """The marker of :func:`record_finished`, when it covers these settings' grid and the store's
    files are exactly as they were when it was written; else None."""
    try:
        marker = json.loads(marker_path(settings, sweep).read_text())
        covered = {tuple(key) for key in marker["grid"]}
        fresh = marker["uri"] == uri and marker["store"] == store_files(uri)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return marker if fresh and grid_keys(settings) <= covered else None


def rerun_finished(settings: SweepSettings) -> int | None:
    """Reprint a finished sweep's report (exit code 0); None when the sweep has anything left to run."""
    sweep = settings.sweep_name()
    uri = store_uri(settings)
    if (marker := recorded_report(settings, sweep, uri)) is not None:
        print(f"sweep {sweep}: all {len(grid_keys(settings))} trials FINISHED (parent run {marker['parent_run_id']}); "
              "nothing to run — the report as the sweep printed it (its store has not changed since):")
        print(marker["report"])
        return 0
    found = finished_sweep(settings, sweep)
    if found is None:
        return None
    print(f"sweep {sweep}: all {found.trials} trials FINISHED in MLflow (parent run {found.parent_run_id}); "
          "nothing to run — the report from the store:")
    # the run that finished the sweep logged this same report to its parent run already
    print_report(settings, sweep, found.uri, log_to_mlflow=False)
    return 0
