"""sweeps/trainable.py on a real Ray runtime: what a grid trial reports, and a search trial's lockstep."""

from __future__ import annotations

import pytest
import ray
from ray import tune

from analysis import contract as C
from sweeps.trainable import best_values, train_trial
from tests.synthetic import synthetic_features


def test_best_values_take_each_metrics_own_direction():
    history = [{"epoch": 1, "acc": 0.2, "loss": 1.5}, {"epoch": 2, "acc": 0.4, "loss": 1.7},
               {"epoch": 3, "acc": 0.3, "loss": 1.1}]
    assert best_values(history) == {"acc": 0.4, "loss": 1.1}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _fit(space, table, settings, path):
    tuner = tune.Tuner(tune.with_parameters(train_trial, data=table, settings=settings), param_space=space,
                       run_config=tune.RunConfig(storage_path=str(path), verbose=0))
    return tuner.fit()


def test_grid_trials_report_what_they_trained_on(local_ray, tmp_path):
    table = synthetic_features(n=300, seed=0)
    train, valid = table.split(1)
    results = _fit({"fold": 1, "fusion": "concat", "labels": tune.grid_search(["hard", "soft"]), "epochs": 3},
                   table, {"cpus_per_trial": 1}, tmp_path)
    assert not results.errors
    by_arm = {r.config["labels"]: r for r in results}
    ties = int((train.majority < 0).sum())
    assert ties > 0
    # n_train is what was trained on: the hard arm has dropped the tied utterances
    assert by_arm["hard"].metrics[C.N_TRAIN] == len(train) - ties
    assert by_arm["soft"].metrics[C.N_TRAIN] == len(train)
    for r in by_arm.values():
        history = r.metrics_dataframe.dropna(subset=[C.VALID_PREFIX + "acc"])
        assert r.metrics[C.N_VALID] == len(valid)
        assert r.metrics[C.BEST_PREFIX + "acc"] == pytest.approx(history[C.VALID_PREFIX + "acc"].max())
        assert r.metrics[C.BEST_PREFIX + "loss"] == pytest.approx(history[C.VALID_PREFIX + "loss"].min())
        assert r.metrics[C.SELECTED_PREFIX + "acc"] <= r.metrics[C.BEST_PREFIX + "acc"]
        assert r.checkpoint is not None


def test_search_trials_step_their_splits_in_lockstep_and_score_in_the_metrics_direction(local_ray, tmp_path):
    table = synthetic_features(n=300, seed=0)
    splits = [(0, ()), (1, ())]
    settings = {"cpus_per_trial": 1, "splits": splits, "metric": "loss"}
    [result] = _fit({"fusion": "concat", "labels": "soft", "epochs": 3}, table, settings, tmp_path)
    frame = result.metrics_dataframe
    assert list(frame["epoch"]) == [1, 2, 3]
    assert result.metrics[C.N_VALID] == sum(len(table.split(k)[1]) for k, _ in splits)
    # score = the running best of the mean loss, minimised
    assert list(frame["score"]) == pytest.approx(list(frame[C.VALID_PREFIX + "loss"].cummin()))
