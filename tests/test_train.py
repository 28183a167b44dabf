"""erc.train.fit on synthetic features with signal: learning, selection, determinism, label arms, I/O."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

import erc.train as train_mod
from erc.model import PRESETS
from erc.train import (
    DEFAULT_CONFIG,
    StopTraining,
    fit,
    load_head,
    predict,
    resolve_config,
    split_fold,
    synthetic_features,
)

METRICS = ("acc", "macro_f1", "micro_f1", "auroc", "ccc_valence", "ccc_arousal", "loss", "cls_loss", "reg_loss",
           "train_loss")


@pytest.fixture(scope="module")
def data():
    return split_fold(synthetic_features(n=1250, seed=0), fold=0)  # 1000 train / 250 valid


@pytest.fixture(autouse=True)
def _one_thread():
    # one thread per run, as the sweep gives each trial; extra threads only add contention on a small box
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("fusion", ["concat", "outer"])
@pytest.mark.parametrize("labels", ["hard", "soft", "peakl"])
def test_heads_learn_well_above_chance(data, fusion, labels):
    train, valid = data
    result = fit({"fusion": fusion, "labels": labels, "epochs": 6}, train, valid)
    target = valid["majority"][valid["majority"] >= 0]
    chance = np.bincount(target).max() / len(target)  # always predicting the commonest class
    assert chance < 0.35
    m = result.metrics
    assert m["acc"] > chance + 0.3, m
    assert m["macro_f1"] > 0.5 and m["auroc"] > 0.85, m
    assert m["ccc_valence"] > 0.5 and m["ccc_arousal"] > 0.4, m
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_metrics_agree_with_sklearn_from_predictions(data):
    train, valid = data
    r = fit({"fusion": "concat", "labels": "soft", "epochs": 3}, train, valid)
    p = r.predictions
    assert list(p.columns) == ["segment_id", "logits", "target", "valence_pred", "arousal_pred", "valence", "arousal"]
    assert len(p) == len(valid["votes"]) and (p.segment_id.to_numpy() == valid["segment_id"]).all()
    logits = np.stack(p.logits.to_numpy()).astype(np.float64)
    keep = p.target.to_numpy() >= 0
    y, pred = p.target.to_numpy()[keep], logits[keep].argmax(1)
    prob = softmax(logits[keep], axis=1)

    def ccc(x, t):
        return 2 * np.cov(x, t)[0, 1] / (x.var(ddof=1) + t.var(ddof=1) + (x.mean() - t.mean()) ** 2)

    expected = {
        "acc": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro"),
        "micro_f1": f1_score(y, pred, average="micro"),
        "auroc": np.mean([roc_auc_score(y == c, prob[:, c]) for c in np.unique(y)]),
        "ccc_valence": ccc(p.valence_pred.to_numpy(float), p.valence.to_numpy(float)),
        "ccc_arousal": ccc(p.arousal_pred.to_numpy(float), p.arousal.to_numpy(float)),
    }
    for key, value in expected.items():
        assert r.metrics[key] == pytest.approx(value, abs=1e-4), key
    # losses too: CE on unique-majority rows, MSE on all rows, combined with cls_coef 0.7
    ce = -np.log(softmax(logits[keep], axis=1)[np.arange(keep.sum()), y]).mean()
    mse = np.mean([(p.valence_pred - p.valence) ** 2, (p.arousal_pred - p.arousal) ** 2])
    assert r.metrics["cls_loss"] == pytest.approx(ce, rel=1e-4)
    assert r.metrics["reg_loss"] == pytest.approx(mse, rel=1e-4)
    assert r.metrics["loss"] == pytest.approx(0.7 * ce + 0.3 * mse, rel=1e-4)


def test_same_seed_same_numbers(data):
    train, valid = data
    cfg = {"fusion": "outer", "labels": "peakl", "epochs": 2, "dropout": 0.1, "seed": 3}
    a, b = fit(cfg, train, valid), fit(cfg, train, valid)
    assert a.history == b.history
    assert all(torch.equal(a.state_dict[k], b.state_dict[k]) for k in a.state_dict)
    c = fit({**cfg, "seed": 4}, train, valid)
    assert c.history != a.history


def test_config_defaults_and_unknown_key(data):
    cfg = resolve_config({"fusion": "concat"})
    assert cfg["cls_coef"] == 0.7 and cfg["select_metric"] == "acc" and cfg["preset"] == "demo"
    assert cfg["proj_dim"] == PRESETS["demo"]["proj_dim"] and set(cfg) == set(DEFAULT_CONFIG)  # preset sizes
    assert cfg["append_one"] is True
    assert resolve_config({"preset": "paper"})["dim"] == 512
    train, valid = data
    with pytest.raises(KeyError, match="learning_rate"):
        fit({"fusion": "outer", "learning_rate": 0.1}, train, valid)
    with pytest.raises(ValueError, match="labels"):
        resolve_config({"labels": "onehot"})
    with pytest.raises(ValueError, match="select_metric"):
        resolve_config({"select_metric": "accuracy"})


def test_hard_arm_drops_ties_from_training_only(data, monkeypatch):
    train, valid = data
    n_ties_train = int((train["majority"] == -1).sum())
    n_ties_valid = int((valid["majority"] == -1).sum())
    assert n_ties_train > 20 and n_ties_valid > 5

    seen = []  # classification targets of every training batch
    real = train_mod.multitask_loss

    def spy(output, cls_target, va_target, cls_coef=0.7, gamma=0.0, cls_mask=None):
        if cls_mask is None:  # training batches (validation passes a mask)
            seen.append(cls_target.detach().clone())
        return real(output, cls_target, va_target, cls_coef, gamma, cls_mask)

    monkeypatch.setattr(train_mod, "multitask_loss", spy)
    hard = fit({"fusion": "concat", "labels": "hard", "epochs": 1}, train, valid)
    targets = torch.cat(seen)
    assert targets.ndim == 1 and len(targets) == len(train["votes"]) - n_ties_train and (targets >= 0).all()
    seen.clear()
    soft = fit({"fusion": "concat", "labels": "soft", "epochs": 1}, train, valid)
    assert sum(len(t) for t in seen) == len(train["votes"])  # soft keeps the ties

    assert hard.n_train == len(train["votes"]) - n_ties_train and soft.n_train == len(train["votes"])
    # validation is the same for both arms: every row predicted, ties scored only by regression metrics
    for r in (hard, soft):
        assert r.n_valid == len(valid["votes"]) and r.n_valid_cls == len(valid["votes"]) - n_ties_valid
        assert (r.predictions.target == -1).sum() == n_ties_valid


def test_on_epoch_selection_and_early_stop(data):
    train, valid = data
    calls = []
    r = fit({"fusion": "concat", "epochs": 5}, train, valid, on_epoch=lambda e, m: calls.append((e, m)))
    assert [e for e, _ in calls] == [1, 2, 3, 4, 5] and [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5]
    assert all(set(METRICS) <= set(m) for _, m in calls)
    accs = [h["acc"] for h in r.history]
    assert r.selected_epoch == int(np.argmax(accs)) + 1  # first best epoch
    assert r.metrics == r.history[r.selected_epoch - 1]  # every metric from that one epoch

    by_loss = fit({"fusion": "concat", "epochs": 5, "select_metric": "loss"}, train, valid)
    assert by_loss.selected_epoch == int(np.argmin([h["loss"] for h in by_loss.history])) + 1

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise StopTraining

    stopped = fit({"fusion": "concat", "epochs": 5}, train, valid, on_epoch=stop_after_two)
    assert len(stopped.history) == 2 and stopped.stopped_early and stopped.selected_epoch <= 2

    def crash(epoch, metrics):
        raise RuntimeError("scheduler says stop")

    with pytest.raises(RuntimeError, match="scheduler"):
        fit({"fusion": "concat", "epochs": 5}, train, valid, on_epoch=crash)


def test_selected_epoch_supplies_metrics_weights_and_predictions(data, monkeypatch):
    """Scripted validation accuracies: the first best epoch (2) must supply everything in the result."""
    train, valid = data
    scripted = iter([0.1, 0.5, 0.3, 0.5, 0.2])
    outputs = []
    real = train_mod.evaluate_outputs

    def spy(output, target, va_target):
        outputs.append(output.clone())
        return {**real(output, target, va_target), "acc": next(scripted)}

    monkeypatch.setattr(train_mod, "evaluate_outputs", spy)
    r = fit({"fusion": "concat", "epochs": 5}, train, valid)
    assert r.selected_epoch == 2 and r.metrics == r.history[1] and r.metrics["acc"] == 0.5
    assert r.metrics["loss"] != r.history[-1]["loss"]
    np.testing.assert_array_equal(np.stack(r.predictions.logits), outputs[1][:, :7].numpy())
    assert not np.array_equal(np.stack(r.predictions.logits), outputs[-1][:, :7].numpy())
    head = load_head(r.config, r.state_dict)  # the weights are epoch 2's too
    np.testing.assert_allclose(np.stack(predict(head, r.config, valid)[0].logits), outputs[1][:, :7].numpy(),
                               atol=1e-5)


def test_dataset_input_equals_dict_input(data):
    datasets = pytest.importorskip("datasets")
    train, valid = data

    def to_ds(cols):
        return datasets.Dataset.from_dict({k: list(v) for k, v in cols.items()})

    cfg = {"fusion": "outer", "labels": "hard", "epochs": 2}
    assert fit(cfg, to_ds(train), to_ds(valid)).history == fit(cfg, train, valid).history


def test_saved_head_round_trips_predictions_and_embeddings(data):
    train, valid = data
    for fusion, width in (("outer", PRESETS["demo"]["dim"]), ("concat", PRESETS["demo"]["proj_dim"])):
        cfg = {"fusion": fusion, "epochs": 3}
        r = fit(cfg, train, valid, return_embeddings=True)
        assert r.embeddings.shape == (len(valid["votes"]), width)
        head = load_head(r.config, r.state_dict)
        preds, emb = predict(head, r.config, valid, return_embeddings=True)
        np.testing.assert_allclose(np.stack(preds.logits), np.stack(r.predictions.logits), atol=1e-5)
        np.testing.assert_allclose(preds.valence_pred, r.predictions.valence_pred, atol=1e-5)
        np.testing.assert_allclose(emb, r.embeddings, atol=1e-5)
        # the normalisation statistics travel with the weights: a fresh head predicts differently
        fresh = train_mod.build_head(r.config, train["audio_vec"].shape[1], train["text_vec"].shape[1])
        assert not torch.allclose(fresh.norm.audio_mean, head.norm.audio_mean)
    assert fit({"fusion": "concat", "epochs": 1}, train, valid).embeddings is None


def test_command_line(tmp_path, capsys):
    datasets = pytest.importorskip("datasets")
    cols = synthetic_features(n=400, seed=1)
    datasets.Dataset.from_dict({k: list(v) for k, v in cols.items()}).save_to_disk(str(tmp_path / "feats"))
    code = train_mod.main(["--features", str(tmp_path / "feats"), "--fold", "1", "--fusion", "concat",
                           "--labels", "hard", "--epochs", "3", "--set", "focal_gamma=2",
                           "--save", str(tmp_path / "head.pt")])
    out = capsys.readouterr().out
    assert code == 0
    assert "320 train / 80 valid" in out and "selected epoch" in out and '"focal_gamma": 2.0' in out
    table = out.split("selected epoch")[0].splitlines()
    rows = [line.split() for line in table if line.strip() and line.split()[0].isdigit()]
    assert [r[0] for r in rows] == ["1", "2", "3"] and all(len(r) == 11 for r in rows)
    saved = torch.load(tmp_path / "head.pt")
    assert load_head(saved["config"], saved["state_dict"]) is not None and not math.isnan(saved["metrics"]["acc"])
    with pytest.raises(SystemExit):
        train_mod.main(["--features", str(tmp_path / "feats"), "--set", "nonsense=1"])
    assert "nonsense" in capsys.readouterr().err

    help_text = subprocess.run(
        [sys.executable, "-m", "erc.train", "--help"], capture_output=True, text=True, check=False
    )
    assert help_text.returncode == 0 and "--features" in help_text.stdout and "--fold" in help_text.stdout
