"""erc.trainer on synthetic features with signal: learning, selection, determinism, label arms."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

import erc.metrics as metrics_mod
import erc.trainer as trainer_mod
from erc.config import RunConfig
from erc.heads import FUSIONS, HeadConfig, get
from erc.predict import load_head, predict
from erc.trainer import StopTraining, fit
from erc.vocab import DEFAULT_FUSIONS
from tests.synthetic import synthetic_features, with_synthetic_sequences

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def cfg(**flat) -> RunConfig:
    return RunConfig.from_flat(flat)


METRICS = ("acc", "macro_f1", "micro_f1", "auroc", "ccc_valence", "ccc_arousal", "loss", "cls_loss", "reg_loss",
           "train_loss")


@pytest.fixture(scope="module")
def data():
    return synthetic_features(n=1250, seed=0).split(0)  # 1000 train / 250 valid


@pytest.mark.parametrize("fusion", ["concat", "outer"])
@pytest.mark.parametrize("labels", ["hard", "soft", "peakl"])
def test_heads_learn_well_above_chance(data, fusion, labels):
    train, valid = data
    result = fit(cfg(fusion=fusion, labels=labels, epochs=6), train, valid)
    target = valid.majority[valid.majority >= 0]
    chance = np.bincount(target).max() / len(target)  # always predicting the commonest class
    assert chance < 0.35
    m = result.metrics
    assert m["acc"] > chance + 0.3, m
    assert m["macro_f1"] > 0.5 and m["auroc"] > 0.85, m
    assert m["ccc_valence"] > 0.5 and m["ccc_arousal"] > 0.4, m
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


@pytest.mark.parametrize("fusion", [f for f in FUSIONS if f not in DEFAULT_FUSIONS])
def test_every_other_registered_head_trains(data, fusion):
    """A fusion is its module: the trainer runs any registered head unchanged."""
    train, valid = data
    if get(fusion).reads_sequences:  # a sequence head (xattn) reads token sequences: the vectors, repeated
        train, valid = with_synthetic_sequences(train, seed=1), with_synthetic_sequences(valid, seed=2)
    result = fit(cfg(fusion=fusion, labels="soft", epochs=3), train, valid)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.metrics["acc"] > 0.3, result.metrics


def test_metrics_agree_with_sklearn_from_predictions(data):
    train, valid = data
    r = fit(cfg(fusion="concat", labels="soft", epochs=3), train, valid)
    p = r.predictions
    assert len(p.segment_id) == len(valid) and (p.segment_id == valid.segment_id).all()
    logits = p.logits.astype(np.float64)
    keep = p.majority >= 0
    y, pred = p.majority[keep], logits[keep].argmax(1)
    prob = softmax(logits[keep], axis=1)

    def ccc(x, t):
        return 2 * np.cov(x, t)[0, 1] / (x.var(ddof=1) + t.var(ddof=1) + (x.mean() - t.mean()) ** 2)

    expected = {
        "acc": accuracy_score(y, pred),
        "macro_f1": f1_score(y, pred, average="macro"),
        "micro_f1": f1_score(y, pred, average="micro"),
        "auroc": np.mean([roc_auc_score(y == c, prob[:, c]) for c in np.unique(y)]),
        "ccc_valence": ccc(p.va_pred[:, 0].astype(float), p.va[:, 0].astype(float)),
        "ccc_arousal": ccc(p.va_pred[:, 1].astype(float), p.va[:, 1].astype(float)),
    }
    for key, value in expected.items():
        assert r.metrics[key] == pytest.approx(value, abs=1e-4), key
    # losses too: CE on unique-majority rows, MSE on all rows, combined with cls_coef 0.7
    ce = -np.log(softmax(logits[keep], axis=1)[np.arange(keep.sum()), y]).mean()
    mse = np.mean((p.va_pred - p.va) ** 2)
    assert r.metrics["cls_loss"] == pytest.approx(ce, rel=1e-4)
    assert r.metrics["reg_loss"] == pytest.approx(mse, rel=1e-4)
    assert r.metrics["loss"] == pytest.approx(0.7 * ce + 0.3 * mse, rel=1e-4)


SEEDED = {"fusion": "outer", "labels": "peakl", "epochs": 2, "dropout": 0.1, "seed": 3}


def _history_in_process(queue) -> None:
    torch.set_num_threads(1)
    train, valid = synthetic_features(n=1250, seed=0).split(0)
    queue.put(fit(cfg(**SEEDED), train, valid).history)


def test_same_seed_same_numbers_in_threads_and_processes(data):
    """A seed fixes the result whatever else runs: alone, beside another fit in threads, in another process."""
    train, valid = data
    alone = fit(cfg(**SEEDED), train, valid)
    assert alone.history == fit(cfg(**SEEDED), train, valid).history

    results: dict[str, list] = {}

    def run(name: str, config: RunConfig) -> None:
        results[name] = fit(config, train, valid).history

    # the other thread draws from its own RNG all the time (another seed, dropout on): with the global
    # RNG shared, the two runs would perturb each other's initialisation and dropout masks
    threads = [threading.Thread(target=run, args=("same", cfg(**SEEDED))),
               threading.Thread(target=run, args=("other", cfg(**{**SEEDED, "seed": 4, "dropout": 0.3})))]
    torch.manual_seed(123)  # the global RNG's state must not matter either
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results["same"] == alone.history
    assert results["other"] != alone.history

    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_history_in_process, args=(queue,))
    proc.start()
    in_process = queue.get(timeout=300)
    proc.join(timeout=60)
    assert in_process == alone.history


def test_hard_arm_drops_ties_from_training_only(data, monkeypatch):
    train, valid = data
    n_ties_train = int((train.majority == -1).sum())
    n_ties_valid = int((valid.majority == -1).sum())
    assert n_ties_train > 20 and n_ties_valid > 5

    seen = []  # classification targets of every training batch
    real = trainer_mod.multitask_loss

    def spy(output, cls_target, va_target, cls_coef=0.7, gamma=0.0, cls_mask=None, **kwargs):
        if cls_mask is None:  # training batches (validation passes a mask)
            seen.append(cls_target.detach().clone())
        return real(output, cls_target, va_target, cls_coef, gamma, cls_mask, **kwargs)

    monkeypatch.setattr(trainer_mod, "multitask_loss", spy)
    hard = fit(cfg(fusion="concat", labels="hard", epochs=1), train, valid)
    targets = torch.cat(seen)
    assert targets.ndim == 1 and len(targets) == len(train) - n_ties_train and (targets >= 0).all()
    seen.clear()
    soft = fit(cfg(fusion="concat", labels="soft", epochs=1), train, valid)
    assert sum(len(t) for t in seen) == len(train)  # soft keeps the ties

    assert hard.n_train == len(train) - n_ties_train and soft.n_train == len(train)
    # validation is the same for both arms: every row predicted, ties scored only by regression metrics
    for r in (hard, soft):
        assert r.n_valid == len(valid) and r.n_valid_cls == len(valid) - n_ties_valid
        assert (r.predictions.majority == -1).sum() == n_ties_valid


def test_on_epoch_selection_and_early_stop(data):
    train, valid = data
    calls = []
    r = fit(cfg(fusion="concat", epochs=5), train, valid, on_epoch=lambda e, m: calls.append((e, m)))
    assert [e for e, _ in calls] == [1, 2, 3, 4, 5] and [h["epoch"] for h in r.history] == [1, 2, 3, 4, 5]
    assert all(set(METRICS) <= set(m) for _, m in calls)
    accs = [h["acc"] for h in r.history]
    assert r.selected_epoch == int(np.argmax(accs)) + 1  # first best epoch
    assert r.metrics == r.history[r.selected_epoch - 1]  # every metric from that one epoch

    by_loss = fit(cfg(fusion="concat", epochs=5, select_metric="loss"), train, valid)
    assert by_loss.selected_epoch == int(np.argmin([h["loss"] for h in by_loss.history])) + 1

    def stop_after_two(epoch, metrics):
        if epoch == 2:
            raise StopTraining

    stopped = fit(cfg(fusion="concat", epochs=5), train, valid, on_epoch=stop_after_two)
    assert len(stopped.history) == 2 and stopped.stopped_early and stopped.selected_epoch <= 2

    def crash(epoch, metrics):
        raise RuntimeError("scheduler says stop")

    with pytest.raises(RuntimeError, match="scheduler"):
        fit(cfg(fusion="concat", epochs=5), train, valid, on_epoch=crash)


def test_selected_epoch_supplies_metrics_weights_and_predictions(data, monkeypatch):
    """Scripted validation accuracies: the first best epoch (2) must supply everything in the result."""
    train, valid = data
    scripted = iter([0.1, 0.5, 0.3, 0.5, 0.2])
    outputs = []
    real = metrics_mod.evaluate_outputs

    def spy(output, target, va_target):
        outputs.append(output.clone())
        return {**real(output, target, va_target), "acc": next(scripted)}

    monkeypatch.setattr(metrics_mod, "evaluate_outputs", spy)
    r = fit(cfg(fusion="concat", epochs=5), train, valid)
    assert r.selected_epoch == 2 and r.metrics == r.history[1] and r.metrics["acc"] == 0.5
    assert r.metrics["loss"] != r.history[-1]["loss"]
    np.testing.assert_array_equal(r.predictions.logits, outputs[1][:, :7].numpy())
    assert not np.array_equal(r.predictions.logits, outputs[-1][:, :7].numpy())
    head = load_head(r.config, r.state_dict)  # the weights are epoch 2's too
    np.testing.assert_allclose(predict(head, valid)[0].logits, outputs[1][:, :7].numpy(), atol=1e-5)


def test_saved_head_round_trips_predictions_and_embeddings(data):
    train, valid = data
    for fusion, width in (("outer", HeadConfig.demo().dim), ("concat", HeadConfig.demo().proj_dim)):
        r = fit(cfg(fusion=fusion, epochs=3), train, valid, return_embeddings=True)
        assert r.embeddings.shape == (len(valid), width)
        head = load_head(r.config, r.state_dict)
        preds, emb = predict(head, valid, return_embeddings=True)
        np.testing.assert_allclose(preds.logits, r.predictions.logits, atol=1e-5)
        np.testing.assert_allclose(preds.va_pred, r.predictions.va_pred, atol=1e-5)
        np.testing.assert_allclose(emb, r.embeddings, atol=1e-5)
        # the normalisation statistics travel with the weights: a fresh head predicts differently
        fresh = trainer_mod.build_head(r.config.head, train.audio.shape[1], train.text.shape[1])
        assert not torch.allclose(fresh.norm.audio_mean, head.norm.audio_mean)
    assert fit(cfg(fusion="concat", epochs=1), train, valid).embeddings is None


def other_corpus(table, n_classes: int, dimensions: tuple[str, ...]):
    """``table``'s rows as a corpus with ``n_classes`` classes (fractional votes: a rater naming two
    categories gives 1/2 to each) and the given dimensions (NaN ratings without them)."""
    from dataclasses import replace

    from erc.labels import hard

    rng = np.random.default_rng(3)
    votes = np.zeros((len(table), n_classes))
    for i, row in enumerate(table.votes):
        votes[i] = np.bincount(np.arange(len(row)) % n_classes, weights=row, minlength=n_classes)
    votes[:, :2] += 0.5 * rng.integers(0, 2, size=(len(table), 1))  # a two-category rater: 1/2 each
    nan = np.full(len(table), np.nan, np.float32)
    ratings = {} if dimensions else {"valence": nan, "arousal": nan}
    return replace(table, votes=votes, majority=hard(votes), classes=tuple(f"c{k}" for k in range(n_classes)),
                   dimensions=dimensions, **ratings)


@pytest.mark.parametrize("fusion", ["concat", "outer"])
def test_the_head_follows_the_corpus_class_set_and_dimensions(data, fusion):
    from erc.vocab import DIMENSIONS, REGRESSION_METRICS

    train, valid = data
    for n_classes, dims in ((4, DIMENSIONS), (6, ())):
        tr, va = other_corpus(train, n_classes, dims), other_corpus(valid, n_classes, dims)
        assert tr.votes.dtype == np.float64
        result = fit(RunConfig.from_flat({"fusion": fusion, "labels": "peakl", "epochs": 2, "device": "cpu"}), tr, va)
        assert (result.config.head.n_classes, result.config.head.n_dimensions) == (n_classes, len(dims))
        assert result.predictions.logits.shape == (len(va), n_classes)
        assert result.predictions.va_pred.shape == (len(va), len(dims))
        assert 0 < result.metrics["acc"] <= 1
        if dims:
            assert all(np.isfinite(result.metrics[m]) for m in (*REGRESSION_METRICS, "reg_loss"))
        else:
            # without ratings: the loss is the classification loss alone; CCC and reg_loss are absent, not NaN
            assert not set(REGRESSION_METRICS) & set(result.metrics) and "reg_loss" not in result.metrics
            assert result.metrics["loss"] == pytest.approx(result.metrics["cls_loss"])
            with pytest.raises(ValueError, match="needs valence/arousal"):
                fit(RunConfig.from_flat({"fusion": fusion, "select_metric": "ccc_valence", "device": "cpu"}), tr, va)
        head = load_head(result.config, result.state_dict)  # the saved config rebuilds the head's layout
        again, _ = predict(head, va, device="cpu")
        np.testing.assert_allclose(again.logits, result.predictions.logits, rtol=1e-5, atol=1e-5)


def test_peakl_k_is_the_class_count(data):
    from erc.labels import peakl, soft

    train, _ = data
    rows = other_corpus(train, 4, ())
    expected = peakl(soft(rows.votes), 4).astype(np.float32)
    np.testing.assert_allclose(trainer_mod.class_targets(rows, "peakl"), expected)
    assert not np.allclose(expected, peakl(soft(rows.votes), 7))  # K = 7 would sharpen less
