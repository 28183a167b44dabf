"""Fair ablations: per-arm nuisance tuning on inner splits, and repeats over seeds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.runs import find_sweep, load_trials, pair_arms
from erc.config import RunConfig
from sweeps.per_arm import default_point, gain, inner_split, running_best
from sweeps.spaces import load_space
from tests.sweep_helpers import children, parents, run, sweep_command
from tests.synthetic import synthetic_features


def test_inner_split_never_touches_the_outer_fold():
    table = synthetic_features(n=250, seed=0)
    for outer in range(5):
        valid_fold, excluded = inner_split(outer)
        train, valid = table.split(valid_fold, exclude=excluded)
        assert outer not in set(train.fold.tolist()) | set(valid.fold.tolist())
        assert set(valid.fold.tolist()) == {(outer + 1) % 5} and len(set(train.fold.tolist())) == 3


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_default_point_is_the_untuned_config_inside_the_space(fusion):
    space = load_space(fusion)
    point = default_point(space, {"fusion": fusion, "preset": "demo"})
    assert set(point) == set(space.by_role("nuisance"))
    defaults = RunConfig.from_flat({"fusion": fusion}).to_flat()
    for name, value in point.items():
        p = space.params[name]
        assert value in p.values if p.distribution == "choice" else p.low <= value <= p.high
        if p.distribution != "choice" or defaults[name] in p.values:
            assert value == pytest.approx(defaults[name]), name  # the defaults themselves where the space allows
    # the sweep's own values (e.g. from --config) are the untuned point, not the library defaults
    assert default_point(space, {"fusion": fusion, "lr": 5e-4})["lr"] == pytest.approx(5e-4)


def test_gain_and_running_best_follow_the_metric_direction():
    assert gain(0.5, 0.4, "max") == pytest.approx(0.1) and gain(0.9, 1.2, "min") == pytest.approx(0.3)
    assert running_best([0.3, 0.5, 0.4], "max") == [0.3, 0.5, 0.5]
    assert running_best([1.3, 1.1, 1.2], "min") == [1.3, 1.1, 1.1]


@pytest.mark.slow
def test_tune_per_arm_and_repeats(demo_root, demo_encoders, tmp_path):
    cache = tmp_path / "cache"
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                             "concat,outer", "--labels", "peakl", "--epochs", "2", "--tune-per-arm", "2",
                             "--repeats", "2"), cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    [parent] = parents(client)
    exp = client.get_experiment_by_name("erc-sweeps").experiment_id
    fold_ids = {}
    from erc.data import load_corpus

    utterances = load_corpus(demo_root, verbose=False).utterances
    for k in (0, 1):
        fold_ids[k] = set(utterances[utterances.fold == k].segment_id)

    searches = client.search_runs([exp], "tags.role = 'search'")
    assert sorted((r.data.tags["arm"], r.data.tags["fold"]) for r in searches) == [
        ("concat-peakl", "0"), ("concat-peakl", "1"), ("outer-peakl", "0"), ("outer-peakl", "1")]
    grid = {(r.data.tags["arm"], r.data.tags["fold"], r.data.tags["seed"]): r for r in children(client)}
    assert len(grid) == 8 and all(r.info.status == "FINISHED" for r in grid.values())
    for search in searches:
        assert search.data.tags["stage"] == "search"
        assert search.data.tags["mlflow.parentRunId"] == parent.info.run_id
        fold = int(search.data.tags["fold"])
        split = json.loads(Path(client.download_artifacts(search.info.run_id, "split.json", str(tmp_path)))
                           .read_text())
        # the outer validation fold is never trained on or scored on while tuning
        assert not (set(split["train"]) | set(split["valid"])) & fold_ids[fold]
        trials = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{search.info.run_id}'")
        assert len(trials) == 2 and all(t.data.tags["stage"] == "search" for t in trials)  # same budget
        # one trial of every search is the untuned default, and the gain is measured from its score
        fusion = search.data.tags["arm"].split("-")[0]
        untuned = default_point(load_space(fusion), {"fusion": fusion, "epochs": 2})
        [default] = [t for t in trials if all(float(t.data.params[k]) == pytest.approx(float(v))
                                              for k, v in untuned.items())]
        best_acc = max(m.value for m in client.get_metric_history(default.info.run_id, "valid/acc"))
        assert search.data.metrics["search/default_acc"] == pytest.approx(best_acc)
        best = yaml.safe_load(Path(client.download_artifacts(search.info.run_id, "best_config.yaml",
                                                             str(tmp_path / search.info.run_id))).read_text())
        for seed in ("0", "1"):  # the grid ran this arm and fold with its own tuned values
            params = grid[(search.data.tags["arm"], str(fold), seed)].data.params
            for key, value in best.items():
                assert params[key] == str(value) or float(params[key]) == pytest.approx(float(value)), key
    assert {a.path for a in client.list_artifacts(parent.info.run_id, "per_arm_tuning")} >= {
        "per_arm_tuning/per_arm_configs.yaml", "per_arm_tuning/isolation_plot.png", "per_arm_tuning/per_arm_gain.csv"}

    # repeats: runs carry their seed, and the analysis pairs on (fold, seed)
    assert {r.info.run_name for r in grid.values()} >= {"fold0-outer-peakl-seed0", "fold1-concat-peakl-seed1"}
    trials = load_trials(client, find_sweep(client, "erc-sweeps"))
    comparison = pair_arms(trials, "fusion", "outer", "concat", where={"labels": "peakl"})
    keys = comparison.treatment_values["acc"]
    assert set(keys) == set(comparison.baseline_values["acc"]) and len(keys) == 4
    assert comparison.runs == 2
    from analysis import paired_table

    table = paired_table(comparison.treatment_values, comparison.baseline_values)
    assert (table["dof"] == 3).all()  # 2 folds × 2 seeds paired
