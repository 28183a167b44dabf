"""sweeps/results.py: what a trial reports, under the contract's names."""

from __future__ import annotations

import pytest

from erc import contract as C
from erc.config import RunConfig
from erc.trainer import Trainer, fit
from sweeps.results import best_values, dev_report, epoch_report, final_report, full_params, split_ids
from tests.synthetic import synthetic_features


def test_best_values_take_each_metrics_own_direction():
    history = [{"epoch": 1, "acc": 0.2, "loss": 1.5}, {"epoch": 2, "acc": 0.4, "loss": 1.7},
               {"epoch": 3, "acc": 0.3, "loss": 1.1}]
    assert best_values(history) == {"acc": 0.4, "loss": 1.1}


def test_an_epoch_reports_valid_metrics_and_the_training_loss():
    assert epoch_report({"epoch": 2, "acc": 0.5, "loss": 1.0, "train_loss": 1.2}) == {
        C.VALID_PREFIX + "acc": 0.5, C.VALID_PREFIX + "loss": 1.0, C.TRAIN_PREFIX + "loss": 1.2}


def test_params_are_the_fold_and_the_resolved_run_config():
    params = full_params({C.FOLD: 3, C.FUSION: "concat", C.LABELS: "soft", "lr": 0.01})
    assert params[C.FOLD] == 3 and params["lr"] == 0.01
    assert {k: v for k, v in params.items() if k != C.FOLD} == RunConfig.from_flat(
        {C.FUSION: "concat", C.LABELS: "soft", "lr": 0.01}).to_flat()


def test_the_final_report_holds_the_selected_epoch_and_each_metrics_best(one_torch_thread):
    table = synthetic_features(n=200, seed=0)
    result = fit(RunConfig.from_flat({C.FUSION: "concat", C.LABELS: "soft", "epochs": 3}), *table.split(0))
    final = final_report(result, {C.N_TRAIN: 1})
    assert final[C.N_TRAIN] == 1 and final[C.RESULT_EPOCH] == result.selected_epoch
    chosen = result.history[result.selected_epoch - 1]
    assert final[C.SELECTED_PREFIX + "acc"] == pytest.approx(chosen["acc"])
    assert final[C.BEST_PREFIX + "loss"] == pytest.approx(min(h["loss"] for h in result.history))


def test_a_dev_split_is_reported_beside_the_held_out_fold(one_torch_thread):
    assert epoch_report({"epoch": 1, "acc": 0.5}, {"epoch": 1, "acc": 0.6}) == {
        C.VALID_PREFIX + "acc": 0.5, C.DEV_PREFIX + "acc": 0.6}
    table = synthetic_features(n=300, seed=0)
    train, dev, valid = table.split_dev(0)
    config = RunConfig.from_flat({C.FUSION: "concat", C.LABELS: "soft", "epochs": 3})
    trainer = Trainer(config, train, valid, dev=dev)
    assert dev_report([trainer]) is None  # before the first epoch
    while not trainer.done:
        trainer.run_epoch()
    assert dev_report([trainer]) == {k: v for k, v in trainer.dev_history[-1].items() if k != "epoch"}
    result = trainer.result()
    result.robust = trainer.robustness()
    final = final_report(result, {})
    assert final[C.SELECTED_PREFIX + "acc"] == pytest.approx(result.metrics["acc"])
    assert final[C.ORACLE_PREFIX + "acc"] == pytest.approx(result.oracle_metrics["acc"])
    assert final[C.ORACLE_PREFIX + "acc"] >= final[C.SELECTED_PREFIX + "acc"]
    assert final[C.ORACLE_PREFIX + "epoch"] == result.oracle_epoch
    assert {f"{C.ROBUST_PREFIX}{c}/acc" for c in C.condition_names()} <= set(final)
    ids = split_ids(train, dev, valid)
    assert set(ids) == {"train", "dev", "test"} and not set(ids["dev"]) & (set(ids["train"]) | set(ids["test"]))
