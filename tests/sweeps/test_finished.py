"""sweeps/finished.py: a finished sweep is recognised from a real MLflow store (SQLite), and only then."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.entities import Param

from erc import contract as C
from sweeps.finished import finished_sweep, grid_keys, marker_path, record_finished, recorded_report
from sweeps.settings import SweepSettings
from sweeps.store import default_tracking_uri, open_store
from tests.sweep_helpers import REPO


def _settings(tmp_path, **changes) -> SweepSettings:
    return SweepSettings(cache_dir=tmp_path, folds=[0, 1], fusions=["concat", "outer"], labels=["peakl"], **changes)


def _store_sweep(settings: SweepSettings, *, parent_status: str = "FINISHED", skip: int = 0,
                 trial_status: str = "FINISHED") -> tuple:
    """A sweep as the driver leaves it: the parent run, and one trial run per grid key (``skip`` left out)."""
    client = open_store(default_tracking_uri(settings.cache_dir))
    exp = client.create_experiment(settings.experiment)
    sweep = settings.sweep_name()
    parent = client.create_run(exp, tags={C.SWEEP: sweep, C.ROLE: C.PARENT_ROLE}).info.run_id
    for i, (fold, fusion, labels, seed) in enumerate(sorted(grid_keys(settings))):
        if i < skip:
            continue
        run = client.create_run(exp, tags={C.SWEEP: sweep, C.ROLE: C.TRIAL_ROLE, C.STAGE: C.GRID_STAGE,
                                           C.PARENT_RUN_ID: parent}).info.run_id
        client.log_batch(run, params=[Param(C.FOLD, fold), Param(C.FUSION, fusion), Param(C.LABELS, labels),
                                      Param(C.SEED, seed)])
        client.set_terminated(run, status=trial_status)
    client.set_terminated(parent, status=parent_status)
    return client, sweep, parent


def test_every_grid_trial_finished_under_a_finished_parent_is_a_finished_sweep(tmp_path):
    settings = _settings(tmp_path)
    _, sweep, parent = _store_sweep(settings)
    found = finished_sweep(settings, sweep)
    assert found is not None and found.parent_run_id == parent and found.trials == 4


@pytest.mark.parametrize(("where", "store"), [
    ("a trial missing", {"skip": 1}),
    ("a trial failed", {"trial_status": "FAILED", "parent_status": "FAILED"}),
    ("the driver was interrupted", {"parent_status": "KILLED"}),
])
def test_anything_left_to_run_takes_the_normal_path(tmp_path, where, store):
    settings = _settings(tmp_path)
    _, sweep, _ = _store_sweep(settings, **store)
    assert finished_sweep(settings, sweep) is None, where


def test_settings_asking_for_more_trials_than_ran_take_the_normal_path(tmp_path):
    _, sweep, _ = _store_sweep(_settings(tmp_path))
    more = _settings(tmp_path, name=sweep, repeats=2)  # same sweep name, a second seed the store lacks
    assert finished_sweep(more, sweep) is None


def test_a_fresh_cache_is_not_read_and_no_store_is_created(tmp_path):
    settings = _settings(tmp_path)
    assert finished_sweep(settings, settings.sweep_name()) is None
    assert not (tmp_path / "mlflow.db").exists()


def test_a_finished_rerun_loads_neither_ray_nor_torch(tmp_path):
    settings = _settings(tmp_path)
    _store_sweep(settings)
    code = (f"import json, sys; from sweeps.finished import finished_sweep; from sweeps.settings import SweepSettings;"
            f"s = SweepSettings(cache_dir={str(tmp_path)!r}, folds=[0, 1], fusions=['concat', 'outer'], "
            f"labels=['peakl']); assert finished_sweep(s, s.sweep_name()) is not None;"
            f"print(json.dumps(sorted(m for m in ('ray', 'torch') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_a_recorded_report_is_reprinted_without_mlflow_while_the_store_is_untouched(tmp_path):
    settings = _settings(tmp_path)
    client, sweep, parent = _store_sweep(settings)
    uri = default_tracking_uri(settings.cache_dir)
    record_finished(settings, sweep, uri, parent, "# the report as printed")
    code = (f"import json, sys; from sweeps.finished import rerun_finished; from sweeps.settings import SweepSettings;"
            f"s = SweepSettings(cache_dir={str(tmp_path)!r}, folds=[0, 1], fusions=['concat', 'outer'], "
            f"labels=['peakl']); assert rerun_finished(s) == 0;"
            f"print(json.dumps(sorted(m for m in ('ray', 'torch', 'mlflow') if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    lines = out.stdout.strip().splitlines()
    assert "# the report as printed" in lines and json.loads(lines[-1]) == []
    # a grid the marker does not cover asks MLflow
    assert recorded_report(_settings(tmp_path, name=sweep, repeats=2), sweep, uri) is None
    # any write to the store (here a tag, as the UI sets one) makes the marker stale
    assert recorded_report(settings, sweep, uri) is not None
    client.set_tag(parent, "note", "edited in the UI")
    assert recorded_report(settings, sweep, uri) is None
    assert finished_sweep(settings, sweep) is not None  # the MLflow path still finds the finished sweep


def test_no_marker_for_a_server_store(tmp_path):
    settings = _settings(tmp_path)
    record_finished(settings, "s", "http://127.0.0.1:1", "p", "text")
    assert not marker_path(settings, "s").exists()
