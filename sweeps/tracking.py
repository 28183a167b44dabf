"""MLflow for sweeps: one parent run per sweep, one child run per Tune trial (DESIGN §7).

All MLflow writes happen on the driver, in a Tune callback, for three reasons:
- the tracking store only has to be reachable from the driver (a laptop's SQLite file works
  for a sweep whose trials run on other nodes);
- the driver sees every trial transition (start, result, retry, error, completion), so a
  run's status tells the truth, which a trial process killed mid-epoch cannot guarantee;
- a run is tied to Tune's trial id (tag ``ray.trial_id``) and looked up in the store, never
  kept only in memory: after ``Tuner.restore`` or a retry the trial continues its own run
  (Ray's ``MLflowLoggerCallback`` creates a second run there, see ray-project/ray#29916).
"""

from __future__ import annotations

import json
import logging
import math
import queue
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from ray.tune import Callback

from erc import contract as C
from erc.contract import search_all

# the store's address and opening it: import-light, in sweeps.store (a finished sweep's rerun needs no Ray)
from sweeps.store import check_reachable, default_tracking_uri, open_store  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def git_commit() -> str:
    """The commit of the code that runs (``-dirty`` when the work tree has changes)."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, check=False,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def command_line() -> str:
    return " ".join([Path(sys.executable).name, *sys.argv])


def get_or_create_experiment(client: MlflowClient, name: str, artifact_location: str | None = None) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        return experiment.experiment_id
    try:
        return client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException as err:  # another sweep created it a moment ago
        if err.error_code != "RESOURCE_ALREADY_EXISTS" or client.get_experiment_by_name(name) is None:
            raise
        return client.get_experiment_by_name(name).experiment_id


def find_runs(client: MlflowClient, experiment_id: str, **tags: str) -> list:
    """Runs carrying every given tag value (values quoted: a sweep name may hold a quote)."""
    return search_all(client, experiment_id, C.tag_filter(tags))


def start_parent(client: MlflowClient, experiment_id: str, sweep: str, params: Mapping[str, Any],
                 tags: Mapping[str, str]) -> str:
    """The sweep's parent run: found by its ``sweep`` tag (a rerun resumes it) or created."""
    existing = find_runs(client, experiment_id, **{C.SWEEP: sweep, C.ROLE: C.PARENT_ROLE})
    if existing:
        run_id = existing[0].info.run_id
        client.update_run(run_id, status="RUNNING")
        client.set_tag(run_id, C.RESUMED, str(int(existing[0].data.tags.get(C.RESUMED, "0")) + 1))
        return run_id
    run = client.create_run(experiment_id, run_name=sweep,
                            tags={C.SWEEP: sweep, C.ROLE: C.PARENT_ROLE, **tags})
    client.log_batch(run.info.run_id, params=[Param(k, _param(v)) for k, v in params.items()])
    return run.info.run_id


def mark_orphans_killed(client: MlflowClient, experiment_id: str, parent_id: str) -> int:
    """Children left RUNNING by a driver that died: nothing runs them any more."""
    runs = search_all(client, experiment_id, C.tag_filter(parent=parent_id, status="RUNNING"))
    for run in runs:
        client.set_tag(run.info.run_id, C.ORPHANED, "true")
        client.set_terminated(run.info.run_id, status="KILLED")
    return len(runs)


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text[:6000]


def metric_key(key: str) -> str:
    """MLflow allows only letters, digits and ``_ - . / : space`` in metric keys."""
    return "".join(ch if ch.isalnum() or ch in "_-./: " else "_" for ch in key)


class _Writer:
    """The callback's MLflow writes, in submission order, on one background thread.

    A Tune trial waits in ``tune.report`` until the driver has processed its previous result, so a
    result's SQLite writes (tens to hundreds of ms each) on the driver's thread would idle the trial's
    slot every epoch. Here they run behind the driver loop; :meth:`flush` waits for them. The callback
    flushes before every experiment snapshot (``get_state``) and at the end of the experiment, so a
    snapshot never records more than MLflow holds (the SIGKILL guarantees stay as they were). A
    failed write is raised by the next submit or flush, as a synchronous write would have been.
    """

    def __init__(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name="mlflow-trial-writes", daemon=True)
        self._thread.start()
        _WRITERS.add(self)

    def _work(self) -> None:
        while True:
            fn, args = self._queue.get()
            try:
                if self._error is None:  # after a failure nothing more is written: the next call raises it
                    fn(*(arg.run_id if isinstance(arg, NewRun) else arg for arg in args))
            except BaseException as err:  # noqa: BLE001 - handed to the driver's thread by _raise
                self._error = err
            finally:
                self._queue.task_done()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        self._raise()
        self._queue.put((fn, args))

    def flush(self) -> None:
        self._queue.join()
        self._raise()


_WRITERS: weakref.WeakSet[_Writer] = weakref.WeakSet()


class NewRun:
    """A trial's run that the writer thread creates: writes submitted after it name the handle and
    get its id, because they run after the create, in submission order.

    Creating the run on the driver's thread held the trial's slot idle for a store round trip
    (tens of ms on SQLite) before every trial started.
    """

    __slots__ = ("run_id",)

    def __init__(self) -> None:
        self.run_id: str | None = None

    def create(self, client: MlflowClient, experiment_id: str, name: str, tags: Mapping[str, str],
               params: list[Param]) -> None:
        self.run_id = client.create_run(experiment_id, run_name=name, tags=dict(tags)).info.run_id
        client.log_batch(self.run_id, (), params)


def flush_writes() -> None:
    """Wait for every trial callback's pending MLflow writes (a driver about to read or end its runs)."""
    for writer in list(_WRITERS):
        writer.flush()


class MlflowTrialCallback(Callback):
    """Tune callback mirroring every trial into exactly one nested MLflow run.

    Picklable (Tune stores it in the experiment state and brings it back on restore): only the
    URI, ids and tags are kept; the client is recreated on demand.
    """

    parent_of: Any = None  # also for a callback pickled before this attribute existed

    def __init__(self, tracking_uri: str, experiment_id: str, parent_run_id: str, tags: Mapping[str, str],
                 run_name: Any = None, trial_tags: Any = None, params_of: Any = None, parent_of: Any = None) -> None:
        self.tracking_uri = tracking_uri
        self.experiment_id = experiment_id
        self.parent_run_id = parent_run_id
        self.tags = dict(tags)
        self.run_name = run_name  # config -> str
        self.trial_tags = trial_tags  # config -> dict of tags
        self.params_of = params_of  # config -> the full configuration to record as params
        self.parent_of = parent_of  # config -> the run to nest under, if not parent_run_id
        self._reset_caches()

    def _reset_caches(self) -> None:
        self._client: MlflowClient | None = None
        self._writer: _Writer | None = None
        self._runs: dict[str, str | NewRun] = {}
        self._attempt: dict[str, int] = {}
        self._node_tagged: set[str] = set()
        self._fresh: set[str] = set()
        self._by_parent: dict[str, dict[str, Any]] = {}
        self._done_before: set[str] = set()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __setstate__(self, state: dict) -> None:
        # caches are rebuilt from the store, whatever version of this class pickled the state
        self.__dict__.update(state)
        self._reset_caches()

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.tracking_uri)
        return self._client

    def _write(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._writer is None:
            self._writer = _Writer()
        self._writer.submit(fn, *args)

    def flush(self) -> None:
        """Wait until every write so far is in the store."""
        if self._writer is not None:
            self._writer.flush()

    def get_state(self) -> None:
        # Tune asks just before it saves an experiment snapshot: let the snapshot follow the store
        self.flush()  # and returns no state: the callback's state is the store

    def on_experiment_end(self, trials: list, **info) -> None:
        self.flush()

    def _known_runs(self, parent: str) -> dict[str, Any]:
        """A parent's child runs by trial id: one query per parent and driver session, not one per trial."""
        if parent not in self._by_parent:
            runs = search_all(self.client, self.experiment_id, C.tag_filter(parent=parent))
            self._by_parent[parent] = {r.data.tags[C.TRIAL_ID]: r for r in runs if C.TRIAL_ID in r.data.tags}
        return self._by_parent[parent]

    def run_id(self, trial) -> str:
        """The id of the trial's run (waits for the writes, so a new run exists)."""
        run = self._run(trial)
        if isinstance(run, NewRun):
            self.flush()
            return run.run_id
        return run

    def _run(self, trial) -> str | NewRun:
        """The trial's run: from the store by ``ray.trial_id`` (a resumed or retried trial), or new
        (created behind the driver loop, like every write)."""
        if trial.trial_id in self._runs:
            return self._runs[trial.trial_id]
        parent = self.parent_of(trial.config) if self.parent_of else self.parent_run_id
        found = self._known_runs(parent).get(trial.trial_id)
        if found is not None:
            run_id = found.info.run_id
            self._attempt[trial.trial_id] = int(found.data.tags.get(C.ATTEMPTS, "0"))
            if found.info.status == "FINISHED":  # completed before an interruption; keep it as it is
                self._done_before.add(trial.trial_id)
        else:
            config = trial.config
            tags = {**self.tags, C.ROLE: C.TRIAL_ROLE, C.PARENT_RUN_ID: parent,
                    C.TRIAL_ID: trial.trial_id, C.ATTEMPTS: "1",
                    **(self.trial_tags(config) if self.trial_tags else {})}
            name = self.run_name(config) if self.run_name else trial.trial_id
            params = self.params_of(config) if self.params_of else config
            run_id = NewRun()
            self._write(run_id.create, self.client, self.experiment_id, name, tags,
                        [Param(k, _param(v)) for k, v in sorted(params.items())])
            self._attempt[trial.trial_id] = 0
            self._fresh.add(trial.trial_id)
        self._runs[trial.trial_id] = run_id
        return run_id

    def on_trial_start(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._run(trial)
        if trial.trial_id in self._done_before:
            return
        attempt = self._attempt.get(trial.trial_id, 0) + 1
        self._attempt[trial.trial_id] = attempt
        self._node_tagged.discard(trial.trial_id)  # a retry may run on another node
        if trial.trial_id in self._fresh:  # created RUNNING with attempts=1 a moment ago
            self._fresh.discard(trial.trial_id)
            return
        self._write(self.client.update_run, run_id, "RUNNING")
        self._write(self.client.set_tag, run_id, C.ATTEMPTS, str(attempt))

    def on_trial_result(self, iteration: int, trials: list, trial, result: dict, **info) -> None:
        run_id = self._run(trial)
        if trial.trial_id in self._done_before:
            return
        now = int(time.time() * 1000)
        # a batched result carries the epochs before it: each at its own step
        metrics = [Metric(metric_key(k), float(v), now, int(r.get(C.RESULT_EPOCH, 0)))
                   for r in (*result.get(C.RESULT_EARLIER_EPOCHS, ()), result) for k, v in r.items()
                   if k.startswith(C.LOGGED_PREFIXES) and isinstance(v, int | float) and math.isfinite(v)]
        params, tags = [], []
        if trial.trial_id not in self._node_tagged and C.RESULT_NODE_ID in result:
            self._node_tagged.add(trial.trial_id)
            tags = [RunTag(C.NODE_ID, str(result[C.RESULT_NODE_ID])),
                    RunTag(C.NODE_IP, str(result.get(C.RESULT_NODE_IP)))]
            # The result reports them under the contract's param names (what the head trained / was scored on).
            params = [Param(k, str(result[k])) for k in (C.N_TRAIN, C.N_VALID, C.N_DEV) if k in result]
            if self._attempt.get(trial.trial_id, 1) > 1:
                tags.append(RunTag(C.node_attempt_tag(self._attempt[trial.trial_id]), str(result[C.RESULT_NODE_ID])))
        self._write(self._log_result, run_id, metrics, params, tags)

    def _log_result(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        if params:  # a retry's params are logged already (MLflow refuses to log a param twice)
            existing = self.client.get_run(run_id).data.params
            params = [p for p in params if p.key not in existing]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def _record_error(self, trial, final: bool) -> None:
        run_id = self._run(trial)
        attempt = self._attempt.get(trial.trial_id, 1)
        # The driver's local error file exists as soon as the failure is handled; the copy on
        # storage (get_error) only after the next sync.
        local = Path(trial.error_file) if trial.error_file else None
        if local is not None and local.is_file():
            text = local.read_text(errors="replace")
        else:
            error = trial.get_error()
            text = str(error) if error is not None else "(Tune recorded no error text)"
        self._write(self.client.log_text, run_id, text, C.error_artifact(attempt))
        self._write(self.client.set_tag, run_id, C.LAST_ERROR,
                    text.strip().splitlines()[-1][:500] if text.strip() else "")
        self._write(self.client.set_tag, run_id, C.FAILED_ATTEMPTS, str(trial.num_failures))
        if final:
            self._write(self.client.set_terminated, run_id, "FAILED")

    def on_trial_recover(self, iteration: int, trials: list, trial, **info) -> None:
        self._record_error(trial, final=False)  # Tune retries it; the retry continues this run

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._record_error(trial, final=True)

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        run_id = self._run(trial)
        if trial.trial_id in self._done_before:
            return
        self._write(self._finish, run_id, trial.checkpoint)

    def _finish(self, run_id: str, checkpoint: Any) -> None:
        """The finished trial's files as its artifacts, then its status: FINISHED only once they are in."""
        if checkpoint is not None:
            with tempfile.TemporaryDirectory() as tmp:
                # to_directory also fetches a checkpoint kept on remote storage (s3://, NFS on a node)
                local = checkpoint.to_directory(str(Path(tmp) / "checkpoint"))
                for path in sorted(Path(local).iterdir()):
                    self.client.log_artifact(run_id, str(path), artifact_path=_artifact_dir(path))
        self.client.set_terminated(run_id, status="FINISHED")


def _artifact_dir(path: Path) -> str | None:
    if path.suffix == ".png":
        return C.PLOTS_DIR
    if path.suffix == ".pt":
        return C.CHECKPOINT_DIR
    return None


def end_parent(client: MlflowClient, parent_id: str, status: str) -> None:
    assert status in ("FINISHED", "FAILED", "KILLED")
    client.set_terminated(parent_id, status=status)
