"""sweeps/trainable.py on a real Ray runtime: what a grid trial reports, and a search trial's lockstep."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import ray
import torch
from ray import tune

from erc import contract as C
from erc.heads import HeadConfig, build_head, model_size
from sweeps.trainable import train_trial
from tests.synthetic import synthetic_features


@pytest.fixture(scope="module")
def local_ray():
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _fit(space, table, settings, path):
    tuner = tune.Tuner(tune.with_parameters(train_trial, data=table, settings=settings), param_space=space,
                       run_config=tune.RunConfig(storage_path=str(path), verbose=0))
    return tuner.fit()


def epochs(result) -> pd.DataFrame:
    """A grid trial's epochs: those it reported on their own, and those batched into later results."""
    rows = [e for r in result.metrics_dataframe.to_dict("records") for e in r.get(C.RESULT_EARLIER_EPOCHS) or ()]
    frame = result.metrics_dataframe
    if C.VALID_PREFIX + "acc" in frame:
        rows += frame.dropna(subset=[C.VALID_PREFIX + "acc"]).to_dict("records")
    return pd.DataFrame(rows).sort_values("epoch", ignore_index=True)


def test_grid_trials_report_what_they_trained_on(local_ray, tmp_path):
    table = synthetic_features(n=300, seed=0)
    train, dev, valid = table.split_dev(1)
    results = _fit({"fold": 1, "fusion": "concat", "labels": tune.grid_search(["hard", "soft"]), "epochs": 3},
                   table, {"cpus_per_trial": 1}, tmp_path)
    assert not results.errors
    by_arm = {r.config["labels"]: r for r in results}
    ties = int((train.majority < 0).sum())
    assert ties > 0
    # n_train is what was trained on: the dev sessions are out, and the hard arm has dropped the ties
    assert by_arm["hard"].metrics[C.N_TRAIN] == len(train) - ties
    assert by_arm["soft"].metrics[C.N_TRAIN] == len(train)
    for r in by_arm.values():
        history = epochs(r)
        assert list(history["epoch"]) == [1, 2, 3]
        assert r.metrics[C.N_VALID] == len(valid) and r.metrics[C.N_DEV] == len(dev)
        assert r.metrics[C.BEST_PREFIX + "acc"] == pytest.approx(history[C.VALID_PREFIX + "acc"].max())
        assert r.metrics[C.BEST_PREFIX + "loss"] == pytest.approx(history[C.VALID_PREFIX + "loss"].min())
        assert r.metrics[C.SELECTED_PREFIX + "acc"] <= r.metrics[C.ORACLE_PREFIX + "acc"]
        assert r.metrics[C.ORACLE_PREFIX + "acc"] == pytest.approx(history[C.VALID_PREFIX + "acc"].max())
        # the epoch is the dev split's choice; the held-out values are that epoch's
        dev_acc = history[C.DEV_PREFIX + "acc"].to_numpy()
        epoch = int(np.argmax(dev_acc)) + 1
        assert r.metrics[C.SELECTED_PREFIX + "epoch"] == epoch
        assert r.metrics[C.SELECTED_PREFIX + "acc"] == pytest.approx(history[C.VALID_PREFIX + "acc"].iloc[epoch - 1])
        assert {f"{C.ROBUST_PREFIX}{c}/acc" for c in C.condition_names()} <= set(r.metrics)
        assert r.checkpoint is not None
        # the head's size, reported once with the final metrics (what MLflow logs as model/params, model/flops)
        size = model_size(build_head(HeadConfig(fusion="concat"), table.audio.shape[1], table.text.shape[1]))
        assert {k: r.metrics[k] for k in C.SIZE_METRICS} == size and size[C.MODEL_FLOPS] > 0
        with r.checkpoint.as_directory() as path:
            split = json.loads((Path(path) / C.SPLIT_FILE).read_text())
        assert split == {"train": train.segment_id.tolist(), "dev": dev.segment_id.tolist(),
                         "test": valid.segment_id.tolist()}


@pytest.mark.parametrize("interval", [3600.0, 0.0])
def test_a_grid_trial_batches_its_epochs_unless_they_are_slow(local_ray, tmp_path, interval):
    table = synthetic_features(n=300, seed=0)
    settings = {"cpus_per_trial": 1, "epoch_report_interval_s": interval}
    [r] = _fit({"fold": 1, "fusion": "concat", "labels": "soft", "epochs": 4}, table, settings, tmp_path)
    frame = r.metrics_dataframe
    assert frame["epoch"].iloc[0] == 1  # the first epoch at once: the run is alive
    if interval:  # quick epochs: the other three travel with the final result
        assert len(frame) == 2 and [e["epoch"] for e in r.metrics[C.RESULT_EARLIER_EPOCHS]] == [2, 3, 4]
    else:  # every interval passed: each epoch on its own, the last one with the final result
        assert len(frame) == 4 and [e["epoch"] for e in r.metrics[C.RESULT_EARLIER_EPOCHS]] == [4]
    assert list(epochs(r)["epoch"]) == [1, 2, 3, 4]


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


def _fit_with_retries(space, table, settings, path):
    tuner = tune.Tuner(tune.with_parameters(train_trial, data=table, settings=settings), param_space=space,
                       run_config=tune.RunConfig(storage_path=str(path), verbose=0,
                                                 failure_config=tune.FailureConfig(max_failures=1),
                                                 checkpoint_config=tune.CheckpointConfig(num_to_keep=1)))
    [result] = tuner.fit()
    assert result.error is None, result.error
    return result


def _resumed_equals_uninterrupted(space, table, settings, tmp_path, k):
    failing = _fit_with_retries(space, table, {**settings, "fail_once": f"fold0-{space['fusion']}-soft@{k}",
                                               "fail_once_dir": str(tmp_path / "markers")}, tmp_path / "a")
    whole = _fit_with_retries(space, table, settings, tmp_path / "b")
    assert (tmp_path / "markers").is_dir()  # the first attempt did fail
    epochs = failing.metrics_dataframe["epoch"].tolist()
    # epochs 1..k from the first attempt, k+1.. from the retry: none twice (the last row is the final report)
    assert epochs[:-1] == list(range(1, space["epochs"] + 1)), epochs
    final = {k: v for k, v in whole.metrics.items() if k.startswith((C.SELECTED_PREFIX, C.BEST_PREFIX))}
    assert final and {k: failing.metrics[k] for k in final} == final
    history = whole.metrics_dataframe.dropna(subset=[C.VALID_PREFIX + "acc"])
    assert failing.metrics_dataframe.dropna(subset=[C.VALID_PREFIX + "acc"])[C.VALID_PREFIX + "loss"].tolist() \
        == history[C.VALID_PREFIX + "loss"].tolist()
    return failing


def test_a_cached_trial_failed_after_epoch_k_resumes_at_k_plus_1(local_ray, tmp_path):
    table = synthetic_features(n=300, seed=0)
    space = {"fold": 0, "fusion": "outer", "labels": "soft", "epochs": 4, "dropout": 0.1, "seed": 0}
    _resumed_equals_uninterrupted(space, table, {"cpus_per_trial": 1, "epoch_checkpoints": True}, tmp_path, 2)


@pytest.mark.slow
def test_a_finetune_trial_failed_after_epoch_k_resumes_at_k_plus_1(local_ray, demo_root, demo_encoders, tmp_path):
    from erc.data import load_corpus
    from erc.inputs import build_inputs

    table, _ = build_inputs(load_corpus(demo_root, verbose=False), *demo_encoders, tmp_path / "inputs",
                            progress=False)
    table = table.subset(np.argsort(table.wave_len, kind="stable")[:36])  # short clips: seconds per epoch
    space = {"fold": 0, "fusion": "concat", "labels": "soft", "epochs": 3, "batch_size": 4, "encoder_lr": 1e-4,
             "seed": 0}
    settings = {"cpus_per_trial": 1, "epoch_checkpoints": True, "mode": "finetune",
                "audio_encoder": str(demo_encoders[0]), "text_encoder": str(demo_encoders[1])}
    failing = _resumed_equals_uninterrupted(space, table, settings, tmp_path, 1)
    with failing.checkpoint.as_directory() as path:
        saved = torch.load(Path(path) / "model.pt", weights_only=False)
        assert not (Path(path) / "state.pt").exists()  # the final checkpoint holds the model, not the resume state
    assert set(saved) == {"config", "state_dict"} and saved["config"]["fusion"] == "concat"
    assert {k.split(".")[0] for k in saved["state_dict"]} == {"audio_encoder", "text_encoder", "head"}
