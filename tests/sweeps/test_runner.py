"""sweeps/runner.py: a sweep's parent run, its Tuner (fit, then restore on a rerun) and what it counts.

Real Ray (a private local runtime) and a real MLflow store (SQLite); the trials are a trainable that
reports at once, so what is tested is the machinery, not training.
"""

from __future__ import annotations

import os

import pytest
import ray
from mlflow import MlflowClient
from ray import tune

from erc import contract as C
from sweeps.grid import grid_tuning
from sweeps.naming import TrialLabels
from sweeps.prepare import Prepared
from sweeps.runner import (
    AUTO_LOGGERS_SWITCH,
    Outcome,
    close_tracking,
    expected_trials,
    only_given_loggers,
    open_tracking,
    run_tuner,
)
from sweeps.settings import SweepSettings
from tests.synthetic import synthetic_features


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def report_fold(config: dict, data, settings: dict) -> None:
    """A trial that reports its fold as its accuracy, with the keys a grid trial reports."""
    tune.report({C.RESULT_EPOCH: 1, C.RESULT_NODE_ID: "node", C.N_TRAIN: len(data), C.VALID_PREFIX + "acc": 0.5,
                 C.SELECTED_PREFIX + "acc": float(config[C.FOLD])})


def _sweep(tmp_path, **changes) -> tuple[SweepSettings, Prepared]:
    settings = SweepSettings(cache_dir=tmp_path, folds=[0, 1], fusions=["concat"], labels=["soft", "hard"],
                             gpus_per_trial=0.0, verbose=-1, **changes)
    table = synthetic_features(n=50, seed=0)
    return settings, Prepared(table, "synthetic", "audio", "text", tmp_path, None)


def test_expected_trials_count_grid_searches_times_samples():
    assert expected_trials({"a": 1, "b": {"grid_search": [1, 2, 3]}, "c": {"grid_search": [0, 1]}}, 2) == 12
    assert expected_trials({"a": tune.choice([1, 2])}, 5) == 5


def test_outcome_counts_what_did_not_finish_as_an_interruption():
    done = Outcome(finished=3, failed=1, total=4, results=None)
    assert not done.interrupted and done.summary() == "3 of 4 trials finished, 1 failed"
    cut = Outcome(finished=1, failed=0, total=4, results="last")
    assert cut.interrupted and cut.unfinished == 3 and cut.summary() == "1 of 4 trials finished, 3 unfinished"
    both = Outcome.combine([done, cut])
    assert (both.finished, both.failed, both.total, both.results) == (4, 1, 8, "last")
    assert dict(both.statuses) == {"FINISHED": 4, "FAILED": 1, "UNFINISHED": 3}


def test_a_sweep_runs_each_trial_once_in_its_own_run_and_a_rerun_resumes_it(local_ray, tmp_path, capsys):
    settings, prepared = _sweep(tmp_path)
    sweep = settings.sweep_name()
    track = open_tracking(settings, prepared, sweep, stage=C.GRID_STAGE)
    client = MlflowClient(track.uri)
    parent = client.get_run(track.parent_run_id)
    assert parent.data.tags[C.SWEEP] == sweep and parent.data.tags[C.ROLE] == C.PARENT_ROLE
    assert parent.data.tags[C.CORPUS] == "synthetic" and parent.data.params["folds"] == "[0, 1]"
    space, config = grid_tuning(settings)
    outcome = run_tuner(settings, prepared, track, report_fold, space, tune_config=config, labels=TrialLabels())
    assert (outcome.finished, outcome.failed, outcome.total) == (4, 0, 4) and not outcome.interrupted
    assert close_tracking(track, outcome) == "FINISHED"

    trials = client.search_runs([track.experiment_id], C.tag_filter({C.ROLE: C.TRIAL_ROLE}))
    assert sorted(r.info.run_name for r in trials) == ["fold0-concat-hard", "fold0-concat-soft",
                                                       "fold1-concat-hard", "fold1-concat-soft"]
    for run in trials:
        assert run.info.status == "FINISHED" and run.data.tags[C.PARENT_RUN_ID] == track.parent_run_id
        assert run.data.metrics[C.SELECTED_PREFIX + "acc"] == float(run.data.tags[C.FOLD])
        assert run.data.params[C.N_TRAIN] == "50" and run.data.params["lr"]  # the resolved run config
        assert run.data.tags[C.NODE_ID] == "node"

    # the same command again: the same parent run, Tune's experiment restored, nothing trained twice
    again = open_tracking(settings, prepared, sweep, stage=C.GRID_STAGE)
    assert again.parent_run_id == track.parent_run_id
    assert client.get_run(again.parent_run_id).data.tags[C.RESUMED] == "1"
    capsys.readouterr()
    rerun = run_tuner(settings, prepared, again, report_fold, space, tune_config=config, labels=TrialLabels())
    assert f"resuming sweep {sweep}" in capsys.readouterr().out
    assert (rerun.finished, rerun.total) == (4, 4)
    assert len(client.search_runs([track.experiment_id], C.tag_filter({C.ROLE: C.TRIAL_ROLE}))) == 4


def test_the_parent_run_ends_as_its_trials_did(tmp_path):
    settings, prepared = _sweep(tmp_path)
    track = open_tracking(settings, prepared, "statuses", stage=C.GRID_STAGE)
    client = MlflowClient(track.uri)
    assert close_tracking(track, Outcome(2, 1, 3, None)) == "FAILED"
    assert client.get_run(track.parent_run_id).info.status == "FAILED"
    # a child left RUNNING by a driver that died is marked KILLED, and so is its parent
    orphan = client.create_run(track.experiment_id, tags={C.PARENT_RUN_ID: track.parent_run_id}).info.run_id
    track = open_tracking(settings, prepared, "statuses", stage=C.GRID_STAGE)
    assert client.get_run(orphan).info.status == "KILLED"  # opening the sweep again marks it
    assert close_tracking(track, Outcome(3, 0, 3, None)) == "FINISHED"
    assert close_tracking(track, None) == "KILLED"
    assert close_tracking(track, Outcome(1, 0, 3, None)) == "KILLED"


def test_tunes_default_loggers_are_off_only_while_a_sweep_runs(monkeypatch):
    # a sweep's Tuner gets no TensorBoard logger; any other Tune use in the process keeps Tune's defaults
    monkeypatch.delenv(AUTO_LOGGERS_SWITCH, raising=False)
    with only_given_loggers():
        assert os.environ[AUTO_LOGGERS_SWITCH] == "1"
    assert AUTO_LOGGERS_SWITCH not in os.environ
    monkeypatch.setenv(AUTO_LOGGERS_SWITCH, "0")  # the user's own choice stands
    with only_given_loggers():
        assert os.environ[AUTO_LOGGERS_SWITCH] == "0"
    assert os.environ[AUTO_LOGGERS_SWITCH] == "0"
