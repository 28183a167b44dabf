"""sweeps/search.py end to end: Optuna + ASHA per arm, a config file the grid accepts."""

from __future__ import annotations

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.sweep_helpers import children, run, sweep_command

pytestmark = pytest.mark.slow


def test_search_writes_a_config_that_ablation_accepts(demo_root, demo_encoders, tmp_path):
    cache, out = tmp_path / "cache", tmp_path / "best.yaml"
    epochs = 9  # ASHA rungs at 1, 3, 9 (grace period 1, reduction factor 3)
    proc = run(sweep_command("search.py", demo_root, demo_encoders, cache, "--fusions", "outer", "--labels", "peakl",
                             "--num-samples", "6", "--folds", "0,1", "--epochs", str(epochs), "--grace-period", "1",
                             "--out", str(out)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load(out.read_text())["arms"]["outer-peakl"]
    assert {"lr", "weight_decay", "dim", "depth", "patch", "proj_dim"} <= set(best)
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    search_runs = children(client, stage="search")
    assert len(search_runs) == 6 and all(r.info.status == "FINISHED" for r in search_runs)
    epochs_run = {r.info.run_id: len(client.get_metric_history(r.info.run_id, "valid/acc")) for r in search_runs}
    # ASHA stopped some trials at a rung; a trial that was stopped stopped exactly at one
    assert min(epochs_run.values()) < epochs, epochs_run
    assert set(epochs_run.values()) <= {1, 3, epochs}, epochs_run
    # every search trial validated on both folds: n_valid counts the two validation folds together
    n_valid = {int(r.data.params["n_valid"]) for r in search_runs}
    assert len(n_valid) == 1

    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--config", str(out), "--folds", "0",
                             "--fusions", "outer", "--labels", "peakl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [trial] = children(client)
    assert float(trial.data.params["lr"]) == pytest.approx(best["lr"])
    assert trial.data.params["dim"] == str(best["dim"])
