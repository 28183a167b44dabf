"""The MLflow contract, fast: the trial callback driven by stand-in trials, its runs read back by analysis.

No Ray runtime: the callback only sees Tune's trial objects, so simple stand-ins with the attributes it
uses (trial_id, config, checkpoint, error_file, num_failures, get_error) take a trial through start →
results → retry → start → results → complete; a second driver (the callback pickled and unpickled, as
``Tuner.restore`` does) resumes the sweep. The store is a real SQLite file (no server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from mlflow import MlflowClient
from ray import cloudpickle

from analysis.runs import find_sweep, load_trials, pair_arms
from erc import contract as C
from sweeps import tracking

EXPERIMENT = "contract"
SWEEP = "bob's sweep"  # a quote in the name: every filter must quote it
N_TRAIN, N_VALID = 80, 20


@dataclass
class FakeCheckpoint:
    """What Tune hands the callback: ``to_directory`` copies the trial's files out."""

    source: Path

    def to_directory(self, path: str) -> str:
        Path(path).mkdir(parents=True)
        for f in self.source.iterdir():
            (Path(path) / f.name).write_bytes(f.read_bytes())
        return path


@dataclass
class FakeTrial:
    trial_id: str
    config: dict
    checkpoint: FakeCheckpoint | None = None
    error_file: str | None = None
    num_failures: int = 0
    error_text: str | None = None

    def get_error(self):
        return RuntimeError(self.error_text) if self.error_text else None


def trial_tags(config: dict) -> dict[str, str]:
    return {C.STAGE: C.GRID_STAGE, C.FOLD: str(config["fold"]), C.FUSION: config["fusion"],
            C.LABELS: config["labels"], C.ARM: C.arm_name(config["fusion"], config["labels"]), C.SEED: "0"}


def run_name(config: dict) -> str:
    return f"{C.arm_name(config['fusion'], config['labels'])}-f{config['fold']}"


def results(cb, trial: FakeTrial, accs: list[float], node: str, selected: int | None = None) -> None:
    """One result per epoch (valid/acc = accs[epoch]); with ``selected`` the final selected/ report."""
    for epoch, acc in enumerate(accs):
        cb.on_trial_result(0, [], trial, {"epoch": epoch, "valid/acc": acc, "train/loss": 1.0 - acc,
                                          C.N_TRAIN: N_TRAIN, C.N_VALID: N_VALID, "node_id": node,
                                          "node_ip": "10.0.0.1", "time_this_iter_s": 0.1})
    if selected is not None:
        cb.on_trial_result(0, [], trial, {"epoch": selected, "selected/acc": accs[selected],
                                          "selected/epoch": selected, C.N_TRAIN: N_TRAIN, C.N_VALID: N_VALID,
                                          "node_id": node})


def finish(cb, trial: FakeTrial, accs: list[float], node: str = "node-1") -> None:
    cb.on_trial_start(0, [], trial)
    results(cb, trial, accs, node, selected=len(accs) - 1)
    cb.on_trial_complete(0, [], trial)


def trial(trial_id: str, fold: int, fusion: str, labels: str = "peakl", **kw) -> FakeTrial:
    return FakeTrial(trial_id, {"fold": fold, "fusion": fusion, "labels": labels, "lr": 1e-3}, **kw)


def open_driver(uri: str) -> tuple[MlflowClient, str, str]:
    """What a driver does before Tune starts: the experiment, the (resumed) parent, orphans KILLED."""
    client = MlflowClient(uri)
    exp = tracking.get_or_create_experiment(client, EXPERIMENT)
    parent = tracking.start_parent(client, exp, SWEEP, {"epochs": 3}, {C.STAGE: C.GRID_STAGE})
    tracking.mark_orphans_killed(client, exp, parent)
    return client, exp, parent


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("contract")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    client, exp, parent = open_driver(uri)
    cb = tracking.MlflowTrialCallback(uri, exp, parent, tags={C.SWEEP: SWEEP}, run_name=run_name,
                                      trial_tags=trial_tags)
    # A: crashes after two epochs, is retried on another node and finishes.
    a = trial("a", 0, "outer")
    cb.on_trial_start(0, [], a)
    results(cb, a, [0.5, 0.6], "node-1")
    error_file = tmp / "error.txt"
    error_file.write_text("Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory\n")
    a.error_file, a.num_failures = str(error_file), 1
    cb.on_trial_recover(0, [], a)
    cb.on_trial_start(0, [], a)
    results(cb, a, [0.55, 0.65, 0.7], "node-2", selected=2)
    cb.on_trial_complete(0, [], a)
    # C: finishes with a checkpoint (the head and a figure).
    files = tmp / "ckpt"
    files.mkdir()
    (files / "head.pt").write_bytes(b"weights")
    (files / "confusion_matrix.png").write_bytes(b"\x89PNG")
    finish(cb, trial("c", 0, "concat", checkpoint=FakeCheckpoint(files)), [0.55, 0.6])
    finish(cb, trial("e", 1, "concat"), [0.5, 0.61])
    # B: one epoch, then the driver dies (the run stays RUNNING).
    b = trial("b", 0, "outer", "soft")
    cb.on_trial_start(0, [], b)
    results(cb, b, [0.4], "node-1")
    cb.flush()  # what Tune's snapshot before the death asks of it (writes run behind the driver loop)

    # The second driver: Tuner.restore unpickles the callback from the experiment state.
    _, exp2, parent2 = open_driver(uri)
    assert (exp2, parent2) == (exp, parent)
    cb2 = cloudpickle.loads(cloudpickle.dumps(cb))
    assert cb2._runs == {} and cb2._client is None  # nothing of driver 1's memory: all from the store
    # A finished before the driver died but Tune re-reports it: its run must stay as it is.
    again = trial("a", 0, "outer")
    cb2.on_trial_start(0, [], again)
    results(cb2, again, [0.99], "node-3", selected=0)
    cb2.on_trial_complete(0, [], again)
    # B runs again and runs out of retries.
    b2 = trial("b", 0, "outer", "soft", num_failures=1, error_text="ValueError: NaN loss")
    cb2.on_trial_start(0, [], b2)
    results(cb2, b2, [0.45], "node-1")
    cb2.on_trial_error(0, [], b2)
    # D: a trial the second driver starts.
    finish(cb2, trial("d", 1, "outer"), [0.6, 0.72])
    cb2.on_experiment_end([])
    runs = client.search_runs([exp], C.tag_filter(parent=parent))
    by_trial: dict[str, list] = {}
    for r in runs:
        by_trial.setdefault(r.data.tags[C.TRIAL_ID], []).append(r)
    return {"uri": uri, "client": client, "exp": exp, "parent": parent, "by_trial": by_trial, "tmp": tmp}


def test_one_run_per_trial_with_the_truthful_status(sweep):
    by_trial = sweep["by_trial"]
    assert sorted(by_trial) == ["a", "b", "c", "d", "e"]
    assert all(len(runs) == 1 for runs in by_trial.values())
    status = {t: runs[0].info.status for t, runs in by_trial.items()}
    assert status == {"a": "FINISHED", "b": "FAILED", "c": "FINISHED", "d": "FINISHED", "e": "FINISHED"}
    parents = sweep["client"].search_runs([sweep["exp"]], C.tag_filter({C.ROLE: C.PARENT_ROLE, C.SWEEP: SWEEP}))
    assert len(parents) == 1 and parents[0].data.tags[C.RESUMED] == "1"


def test_retried_trial_keeps_its_run_history_and_error(sweep):
    client = sweep["client"]
    run = sweep["by_trial"]["a"][0]
    tags = run.data.tags
    assert tags[C.ATTEMPTS] == "2" and tags[C.FAILED_ATTEMPTS] == "1"
    assert tags[C.LAST_ERROR] == "RuntimeError: CUDA out of memory"
    # ray.node_id: where the trial ran last; each retry also records its own node.
    assert tags[C.NODE_ID] == "node-2" and tags[C.node_attempt_tag(2)] == "node-2"
    assert tags[C.ROLE] == C.TRIAL_ROLE and tags[C.PARENT_RUN_ID] == sweep["parent"] and tags[C.SWEEP] == SWEEP
    assert run.data.params[C.N_TRAIN] == str(N_TRAIN) and run.data.params[C.N_VALID] == str(N_VALID)
    assert run.data.params["lr"] == "0.001" and run.info.run_name == "outer-peakl-f0"
    path = client.download_artifacts(run.info.run_id, C.error_artifact(1), str(sweep["tmp"] / "dl"))
    assert "CUDA out of memory" in Path(path).read_text()
    # Both attempts' epochs, step = epoch; driver 2's re-report of the finished trial added nothing.
    history = client.get_metric_history(run.info.run_id, "valid/acc")
    assert sorted((m.step, m.value) for m in history) == [(0, 0.5), (0, 0.55), (1, 0.6), (1, 0.65), (2, 0.7)]
    assert run.data.metrics["selected/acc"] == 0.7


def test_resumed_trial_that_runs_out_of_retries_is_failed_with_its_error(sweep):
    client = sweep["client"]
    run = sweep["by_trial"]["b"][0]
    assert run.data.tags[C.ATTEMPTS] == "2" and run.data.tags[C.ORPHANED] == "true"
    assert run.data.tags[C.LAST_ERROR] == "ValueError: NaN loss"
    listed = {a.path for a in client.list_artifacts(run.info.run_id, C.ERRORS_DIR)}
    assert listed == {C.error_artifact(2)}
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid/acc")] == [0, 0]


def test_checkpoint_files_land_where_analysis_reads_them(sweep):
    run_id = sweep["by_trial"]["c"][0].info.run_id
    client = sweep["client"]
    assert {a.path for a in client.list_artifacts(run_id, C.CHECKPOINT_DIR)} == {C.HEAD_CHECKPOINT}
    assert {a.path for a in client.list_artifacts(run_id, C.PLOTS_DIR)} == {f"{C.PLOTS_DIR}/confusion_matrix.png"}


def test_analysis_reads_the_callbacks_runs(sweep):
    client = sweep["client"]
    found = find_sweep(client, EXPERIMENT, SWEEP)
    assert found.parent_run_id == sweep["parent"]
    with pytest.warns(UserWarning, match=r"1 trial run\(s\) that are not FINISHED \(1 FAILED\)"):
        trials = load_trials(client, found)
    assert sorted(trials.runs["run_id"]) == sorted(sweep["by_trial"][t][0].info.run_id for t in "acde")
    assert set(trials.metrics) == {"acc", "epoch"}
    comp = pair_arms(trials, C.FUSION, "outer", "concat", {C.LABELS: "peakl"}, metrics=["acc"])
    assert comp.treatment_values["acc"] == {0: 0.7, 1: 0.72}
    assert comp.baseline_values["acc"] == {0: 0.6, 1: 0.61}
    assert comp.n_train == {0: N_TRAIN, 1: N_TRAIN} and comp.n_test == {0: N_VALID, 1: N_VALID}
    assert comp.treatment_arm == "outer-peakl" and comp.baseline_arm == "concat-peakl"


def fresh_driver(tmp_path: Path) -> tuple[MlflowClient, str, str, tracking.MlflowTrialCallback]:
    """A driver on a new SQLite store and its trial callback."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client, exp, parent = open_driver(uri)
    cb = tracking.MlflowTrialCallback(uri, exp, parent, tags={C.SWEEP: SWEEP}, run_name=run_name,
                                      trial_tags=trial_tags)
    return client, exp, parent, cb


def test_writes_run_in_order_behind_the_driver_and_a_failed_one_is_raised_by_the_next_call(tmp_path):
    client, exp, parent, cb = fresh_driver(tmp_path)
    t = trial("w", 0, "outer")
    cb.on_trial_start(0, [], t)
    results(cb, t, [0.1, 0.2, 0.3], "node-1", selected=2)
    cb.on_trial_complete(0, [], t)
    assert cb.get_state() is None  # Tune's snapshot waits for the writes; the callback keeps no state
    [run] = client.search_runs([exp], C.tag_filter(parent=parent))
    assert run.info.status == "FINISHED" and run.data.metrics["selected/acc"] == 0.3
    assert [m.value for m in client.get_metric_history(run.info.run_id, "valid/acc")] == [0.1, 0.2, 0.3]
    client.delete_run(run.info.run_id)  # MLflow refuses writes to a deleted run: the next write fails
    cb.on_trial_start(0, [], t)
    with pytest.raises(Exception, match="deleted|active"):
        cb.flush()


def test_a_batched_result_logs_each_earlier_epoch_at_its_own_step(tmp_path):
    client, _, _, cb = fresh_driver(tmp_path)
    t = trial("batched", 0, "outer")
    cb.on_trial_start(0, [], t)
    earlier = [{"epoch": e, "valid/acc": acc, "dev/acc": acc - 0.1} for e, acc in ((1, 0.5), (2, 0.7), (3, 0.6))]
    cb.on_trial_result(0, [], t, {"epoch": 2, "selected/acc": 0.7, "node_id": "node-1",
                                  C.RESULT_EARLIER_EPOCHS: earlier})
    cb.on_trial_complete(0, [], t)
    cb.flush()
    run_id = cb.run_id(t)
    steps = {(m.step, m.value) for m in client.get_metric_history(run_id, "valid/acc")}
    assert steps == {(1, 0.5), (2, 0.7), (3, 0.6)}
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "selected/acc")] == [(2, 0.7)]
    assert len(client.get_metric_history(run_id, "dev/acc")) == 3
    assert client.get_run(run_id).data.metrics["valid/acc"] == 0.6  # the latest step's value, as before


def test_a_new_trials_run_is_created_behind_the_driver_loop(tmp_path):
    """on_trial_start returns while the store is still creating the run; every write of the trial
    then lands in that run, in order, once the create is through."""
    import threading

    client, exp, parent, cb = fresh_driver(tmp_path)
    store_may_answer = threading.Event()
    create = cb.client.create_run

    def slow_create(*args, **kwargs):
        assert store_may_answer.wait(60)
        return create(*args, **kwargs)

    cb.client.create_run = slow_create
    t = trial("slow", 0, "outer")
    cb.on_trial_start(0, [], t)  # would wait out the 60 s (and fail the wait) if the create ran here
    results(cb, t, [0.4, 0.5], "node-1", selected=1)
    cb.on_trial_complete(0, [], t)
    assert client.search_runs([exp], C.tag_filter(parent=parent)) == []  # not yet in the store
    store_may_answer.set()
    run_id = cb.run_id(t)  # waits for the writes
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[C.TRIAL_ID] == "slow"
    assert run.data.params["lr"] == "0.001" and run.data.metrics["selected/acc"] == 0.5
    assert [m.value for m in client.get_metric_history(run_id, "valid/acc")] == [0.4, 0.5]
