"""Fair ablations: per-arm nuisance tuning on inner splits (all searches at once), and repeats over seeds."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis.runs import find_sweep, load_trials, pair_arms
from erc.config import RunConfig
from sweeps.per_arm import default_point, gain, inner_split, running_best
from sweeps.spaces import load_space
from tests.sweep_helpers import children, finished_and_running, parents, run, sweep_command, wait_for_runs
from tests.synthetic import synthetic_features


def test_inner_split_never_touches_the_outer_fold():
    table = synthetic_features(n=250, seed=0)
    for outer in range(5):
        valid_fold, excluded = inner_split(outer)
        train, valid = table.split(valid_fold, exclude=excluded)
        assert outer not in set(train.fold.tolist()) | set(valid.fold.tolist())
        assert set(valid.fold.tolist()) == {(outer + 1) % 5} and len(set(train.fold.tolist())) == 3


def test_no_held_out_fold_enters_any_choice():
    """Per-arm tuning and the dev split together (README, *Honest numbers*): fold k is in none of the rows
    its search trains or scores on, nor in the rows its grid trial trains or chooses its epoch on."""
    from sweeps.trainable import trial_splits

    table = synthetic_features(n=400, seed=0)
    config = RunConfig.from_flat({"fusion": "concat"})
    for outer in range(5):
        ((search_train, search_dev, search_valid),) = trial_splits(config, table, [inner_split(outer)], search=True)
        ((train, dev, held_out),) = trial_splits(config, table, [(outer, ())], search=False)
        assert search_dev is None
        chosen_on = (search_train, search_valid, train, dev)  # every row a choice is made with
        assert all(outer not in set(rows.fold.tolist()) for rows in chosen_on)
        assert set(held_out.fold.tolist()) == {outer}
        assert not set(dev.segment_id.tolist()) & set(train.segment_id.tolist())
    # the paper's protocol chooses on the held-out fold, and says so (select_on='valid': no dev set)
    paper = RunConfig.from_flat({"fusion": "concat", "select_on": "valid"})
    ((_, dev, _),) = trial_splits(paper, table, [(0, ())], search=False)
    assert dev is None


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


def search_trials(client: MlflowClient, search) -> list:
    exp = search.info.experiment_id
    return client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{search.info.run_id}'", max_results=1000)


def trials_table(client: MlflowClient, search, tmp_path: Path) -> pd.DataFrame:
    """The search's Optuna study as logged: one row per trial in ask order, with Tune's trial id."""
    return pd.read_csv(client.download_artifacts(search.info.run_id, "trials.csv", str(tmp_path / search.info.run_id)))


@pytest.mark.slow
def test_tune_per_arm_and_repeats(demo_root, demo_encoders, demo_cache, tmp_path):
    cache = demo_cache
    budget = 3
    proc = run(sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0,1", "--fusions",
                             "concat,outer", "--labels", "peakl", "--epochs", "2", "--tune-per-arm", str(budget),
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
    every_trial = []
    for search in searches:
        arm, fold = search.data.tags["arm"], int(search.data.tags["fold"])
        fusion, labels = arm.split("-")
        assert search.info.status == "FINISHED" and search.data.tags["stage"] == "search"
        assert search.data.tags["mlflow.parentRunId"] == parent.info.run_id
        split = json.loads(Path(client.download_artifacts(search.info.run_id, "split.json", str(tmp_path)))
                           .read_text())
        # the outer validation fold is never trained on or scored on while tuning
        assert not (set(split["train"]) | set(split["valid"])) & fold_ids[fold]
        trials = search_trials(client, search)
        every_trial += trials
        assert len(trials) == budget and all(t.info.status == "FINISHED" for t in trials)  # the same budget
        for t in trials:  # only this search's own arm and outer fold
            assert t.data.tags["stage"] == "search" and (t.data.tags["arm"], t.data.tags["fold"]) == (arm, str(fold))
            assert (t.data.params["fusion"], t.data.params["labels"], t.data.params["fold"]) == (fusion, labels,
                                                                                            str(fold))
            assert t.info.run_name.startswith(f"{arm} fold{fold} ")
        # the search's first trial is the untuned default
        table = trials_table(client, search, tmp_path)
        assert list(table["number"]) == list(range(budget)) and set(table["state"]) == {"COMPLETE"}
        first = next(t for t in trials if t.data.tags["ray.trial_id"] == table["ray_trial_id"][0])
        untuned = default_point(load_space(fusion), {"fusion": fusion, "epochs": 2})
        for key, value in untuned.items():
            assert float(first.data.params[key]) == pytest.approx(float(value)), key
        best = yaml.safe_load(Path(client.download_artifacts(search.info.run_id, "best_config.yaml",
                                                             str(tmp_path / search.info.run_id))).read_text())
        assert search.data.metrics["search/best_acc"] == pytest.approx(table["value"].max())
        for seed in ("0", "1"):  # the grid ran this arm and fold with its own tuned values
            params = grid[(arm, str(fold), seed)].data.params
            for key, value in best.items():
                assert params[key] == str(value) or float(params[key]) == pytest.approx(float(value)), key
    # the searches ran at once: in start order, the search trials keep switching between the arms
    arms = [t.data.tags["arm"] for t in sorted(every_trial, key=lambda t: t.info.start_time)]
    assert sum(a != b for a, b in itertools.pairwise(arms)) >= 3, arms
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


@pytest.mark.slow
def test_killed_driver_mid_search_resumes_the_searches(demo_root, demo_encoders, demo_cache, tmp_path):
    cache = demo_cache
    budget = 3
    # two arms, one fold: two searches that run at once, each with its own budget to resume
    cmd = sweep_command("ablation.py", demo_root, demo_encoders, cache, "--folds", "0", "--fusions",
                        "concat,outer", "--labels", "peakl", "--epochs", "30", "--tune-per-arm", str(budget))
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    driver = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True, env=env)
    runs = wait_for_runs(cache / "mlflow.db", driver, lambda runs: finished_and_running(runs, finished=2),
                         timeout=600, stage="search")
    finished_before = {r.data.tags["ray.trial_id"]: r.info.run_id for r in runs if r.info.status == "FINISHED"}
    assert 2 <= len(finished_before) < 2 * budget
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
    driver.wait()

    proc = run(cmd, cwd=tmp_path, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming sweep" in proc.stdout
    client = MlflowClient(f"sqlite:///{cache / 'mlflow.db'}")
    exp = client.get_experiment_by_name("erc-sweeps").experiment_id
    searches = client.search_runs([exp], "tags.role = 'search'")
    assert len(searches) == 2 and all(s.info.status == "FINISHED" for s in searches)
    resumed = {}
    for search in searches:  # every search: its budget of trials, one run each, none left behind
        trials = search_trials(client, search)
        assert len(trials) == budget and all(t.info.status == "FINISHED" for t in trials), search.info.run_name
        assert len({t.data.tags["ray.trial_id"] for t in trials}) == budget
        resumed.update({t.data.tags["ray.trial_id"]: t for t in trials})
        assert set(trials_table(client, search, tmp_path)["ray_trial_id"]) == {t.data.tags["ray.trial_id"]
                                                                             for t in trials}
    for trial_id, run_id in finished_before.items():  # finished search trials were not trained again
        assert resumed[trial_id].info.run_id == run_id and resumed[trial_id].data.tags["attempts"] == "1"
        [result_json] = (cache / "ray_results").glob(f"*-search/*{trial_id}*/result.json")
        epochs = [json.loads(line)["training_iteration"] for line in result_json.read_text().splitlines()]
        assert len(epochs) == len(set(epochs)), (trial_id, epochs)
    assert len(children(client)) == 2 and all(r.info.status == "FINISHED" for r in children(client))


def test_a_search_on_an_official_partition_scores_on_its_dev_part():
    """fold NO_FOLD (MSP-Podcast's Train / Development / Test1): a search trial, standalone or per arm,
    trains on the train part and is scored on the dev part; the test part enters no choice."""
    import dataclasses

    from erc.vocab import NO_FOLD, PARTITIONS
    from sweeps.trainable import trial_splits

    table = synthetic_features(n=300, seed=0)
    parts = np.array(PARTITIONS)[np.arange(len(table)) % 3]
    table = dataclasses.replace(table, partition=parts, fold=np.full(len(table), NO_FOLD))
    config = RunConfig.from_flat({"fusion": "concat"})
    ((train, none, scored),) = trial_splits(config, table, [inner_split(NO_FOLD)], search=True)
    assert none is None
    assert set(train.partition.tolist()) == {PARTITIONS[0]} and set(scored.partition.tolist()) == {PARTITIONS[1]}
    ((_, dev, held_out),) = trial_splits(config, table, [(NO_FOLD, ())], search=False)  # the grid's trial
    assert set(dev.partition.tolist()) == {PARTITIONS[1]} and set(held_out.partition.tolist()) == {PARTITIONS[2]}
