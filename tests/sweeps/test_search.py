"""sweeps/search.py end to end: one Optuna + ASHA search per arm, all at once; a config the grid accepts."""

from __future__ import annotations

import itertools
from collections import Counter

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.sweep_helpers import children, run, sweep_command

pytestmark = pytest.mark.slow


def test_search_arms_at_once_minimises_a_loss_and_writes_a_config_ablation_accepts(demo_root, demo_encoders,
                                                                                    demo_cache, tmp_path):
    cache, out = demo_cache, tmp_path / "best.yaml"
    epochs, samples = 9, 6  # ASHA rungs at 1, 3, 9 (grace period 1, reduction factor 3)
    proc = run(sweep_command("search.py", demo_root, demo_encoders, cache, "--fusions", "concat,outer", "--labels",
                             "peakl", "--num-samples", str(samples), "--folds", "0,1", "--epochs", str(epochs),
                             "--grace-period", "1", "--metric", "loss", "--out", str(out)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    best = yaml.safe_load(out.read_text())["arms"]
    assert set(best) == {"concat-peakl", "outer-peakl"}
    assert {"lr", "weight_decay", "dim", "depth", "patch", "proj_dim"} <= set(best["outer-peakl"])
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    search_runs = children(client, stage="search")
    assert Counter(r.data.tags["arm"] for r in search_runs) == {"concat-peakl": samples, "outer-peakl": samples}
    assert all(r.info.status == "FINISHED" for r in search_runs)
    for r in search_runs:  # each trial holds its own arm's scientific values
        assert r.data.params["fusion"] + "-" + r.data.params["labels"] == r.data.tags["arm"]
        assert r.info.run_name.startswith(r.data.tags["arm"] + " ")
    arms = [r.data.tags["arm"] for r in sorted(search_runs, key=lambda r: r.info.start_time)]
    assert sum(a != b for a, b in itertools.pairwise(arms)) >= 2, arms  # the two searches ran side by side
    losses = {r.info.run_id: [m.value for m in client.get_metric_history(r.info.run_id, "valid/loss")]
              for r in search_runs}
    # ASHA stopped some trials at a rung; a trial that was stopped stopped exactly at one
    assert min(len(v) for v in losses.values()) < epochs
    assert {len(v) for v in losses.values()} <= {1, 3, epochs}
    for arm, values in best.items():  # the loss is minimised: the chosen trial has the arm's lowest loss
        mine = [r for r in search_runs if r.data.tags["arm"] == arm]
        lowest = min(mine, key=lambda r: min(losses[r.info.run_id]))
        assert float(lowest.data.params["lr"]) == pytest.approx(values["lr"]), arm
    # every search trial validated on both folds: n_valid counts the two validation folds together
    assert len({int(r.data.params["n_valid"]) for r in search_runs}) == 1

    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--config", str(out), "--folds", "0",
                             "--fusions", "outer", "--labels", "peakl"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [trial] = children(client)
    assert float(trial.data.params["lr"]) == pytest.approx(best["outer-peakl"]["lr"])
    assert trial.data.params["dim"] == str(best["outer-peakl"]["dim"])
