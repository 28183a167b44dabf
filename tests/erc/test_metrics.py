"""Metrics against independent scikit-learn / numpy computations, including awkward folds."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

import erc.metrics
from erc import vocab
from erc.metrics import ccc, classification_metrics, evaluate_outputs, is_better, regression_metrics


def lin_ccc_sample(x: np.ndarray, y: np.ndarray) -> float:
    """Lin's CCC with sample (n-1) moments, the form torchmetrics computes."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    cov = np.cov(x, y, ddof=1)[0, 1]
    return 2 * cov / (x.var(ddof=1) + y.var(ddof=1) + (x.mean() - y.mean()) ** 2)


def sklearn_classification(logits: np.ndarray, target: np.ndarray) -> dict[str, float]:
    keep = target >= 0
    logits, target = logits[keep], target[keep]
    pred = logits.argmax(1)
    prob = softmax(logits, axis=1)
    present = np.unique(target)
    auroc = np.mean([roc_auc_score(target == c, prob[:, c]) for c in present])
    return {
        "acc": accuracy_score(target, pred),
        "macro_f1": f1_score(target, pred, average="macro"),
        "micro_f1": f1_score(target, pred, average="micro"),
        "auroc": auroc,
    }


@pytest.mark.parametrize("absent", [[], [1, 6]])
def test_classification_metrics_match_sklearn(absent):
    rng = np.random.default_rng(0)
    n = 300
    target = rng.integers(0, 7, n)
    for c in absent:  # classes missing from this fold
        target[target == c] = 3
    logits = rng.standard_normal((n, 7)) + 1.5 * np.eye(7)[target]  # informative but imperfect
    target[rng.random(n) < 0.1] = -1  # ties: left out of classification metrics
    ours = classification_metrics(logits.astype(np.float32), target)
    ref = sklearn_classification(logits, target)
    for key, value in ref.items():
        assert ours[key] == pytest.approx(value, abs=1e-5), key
    assert ours["acc"] == pytest.approx(ours["micro_f1"])
    assert 0.3 < ours["acc"] < 0.95 and ours["macro_f1"] != pytest.approx(ours["acc"])


def test_ccc_matches_formula_and_extremes():
    rng = np.random.default_rng(1)
    y = rng.uniform(1, 5, 200)
    pred = 0.6 * y + 1.0 + 0.3 * rng.standard_normal(200)
    assert ccc(pred, y) == pytest.approx(lin_ccc_sample(pred, y), abs=1e-9)
    assert ccc(y, y) == pytest.approx(1.0)
    assert ccc(y + 1.0, y) < 1.0  # a constant offset is penalised, unlike Pearson
    assert math.isnan(ccc(y[:1], y[:1]))
    # constant predictions (an untrained head): defined by Lin's formula as 0, not NaN
    assert ccc(np.full(200, 3.0), y) == pytest.approx(0.0)
    assert ccc(3.0 + 1e-9 * rng.standard_normal(200), y) == pytest.approx(0.0, abs=1e-6)
    va = regression_metrics(np.stack([pred, y], 1), np.stack([y, y], 1))
    assert va["ccc_valence"] == pytest.approx(lin_ccc_sample(pred, y), abs=1e-9)
    assert va["ccc_arousal"] == pytest.approx(1.0)


def test_degenerate_folds_give_nan_not_errors():
    logits = np.random.default_rng(2).standard_normal((5, 7)).astype(np.float32)
    none = classification_metrics(logits, np.full(5, -1))
    assert all(math.isnan(v) for v in none.values())
    one_class = classification_metrics(logits, np.full(5, 3))
    assert math.isnan(one_class["auroc"]) and not math.isnan(one_class["acc"])


def test_evaluate_outputs_splits_the_nine_outputs():
    rng = np.random.default_rng(3)
    out = rng.standard_normal((50, 9)).astype(np.float32)
    target = rng.integers(0, 7, 50)
    va = rng.uniform(1, 5, (50, 2))
    m = evaluate_outputs(out, target, va)
    assert list(m) == list(vocab.METRIC_KEYS) == ["acc", "macro_f1", "micro_f1", "auroc", "ccc_valence",
                                                  "ccc_arousal"]
    assert m["ccc_valence"] == pytest.approx(lin_ccc_sample(out[:, 7], va[:, 0]), abs=1e-5)
    assert m["acc"] == pytest.approx(accuracy_score(target, out[:, :7].argmax(1)))
    assert m["ccc_arousal"] == pytest.approx(lin_ccc_sample(out[:, 8], va[:, 1]), abs=1e-5)


def test_names_and_directions_are_the_vocabularys():
    # re-exported where the metrics are computed: the sweep and analysis layers import them from here
    assert erc.metrics.METRIC_KEYS is vocab.METRIC_KEYS and erc.metrics.LOSS_KEYS is vocab.LOSS_KEYS
    assert erc.metrics.metric_mode("loss") == "min" and erc.metrics.metric_mode("auroc") == "max"
    with pytest.raises(ValueError, match="unknown metric 'accuracy'"):
        erc.metrics.check_metric("accuracy")


def test_is_better_modes():
    assert is_better(0.5, 0.4, "acc") and not is_better(0.4, 0.4, "acc")  # first best epoch wins ties
    assert is_better(0.3, 0.4, "loss") and not is_better(0.5, 0.4, "train_loss")
    assert not is_better(float("nan"), 0.1, "acc") and is_better(0.1, None, "acc")


@pytest.mark.parametrize("absent", [[], [1, 6]])
def test_classification_and_ccc_match_torchmetrics_with_tied_scores(absent):
    """The vectorised metrics give torchmetrics' numbers, tied scores and absent classes included."""
    import torch
    from torchmetrics.functional.classification import (
        multiclass_accuracy,
        multiclass_auroc,
        multiclass_f1_score,
    )
    from torchmetrics.functional.regression import concordance_corrcoef

    rng = np.random.default_rng(3)
    n = 400
    target = rng.integers(0, 7, n)
    for c in absent:
        target[target == c] = 3
    # logits rounded to 1 decimal: many rows share scores, so the AUROC's tie handling matters
    logits = np.round(rng.standard_normal((n, 7)) + np.eye(7)[target], 1).astype(np.float32)
    ours = classification_metrics(logits, target)
    t, x = torch.as_tensor(target), torch.as_tensor(logits)
    pred = x.argmax(1)
    assert ours["acc"] == pytest.approx(float(multiclass_accuracy(pred, t, 7, average="micro")), abs=1e-6)
    assert ours["micro_f1"] == pytest.approx(float(multiclass_f1_score(pred, t, 7, average="micro")), abs=1e-6)
    assert ours["macro_f1"] == pytest.approx(float(multiclass_f1_score(pred, t, 7, average="macro")), abs=1e-6)
    per_class = multiclass_auroc(x.softmax(1), t, 7, average="none")
    present = torch.bincount(t, minlength=7) > 0
    assert ours["auroc"] == pytest.approx(float(per_class[present].mean()), abs=1e-6)
    y = rng.uniform(1, 5, n)
    p = np.round(0.5 * y + rng.standard_normal(n), 1)
    assert ccc(p, y) == pytest.approx(float(concordance_corrcoef(torch.as_tensor(p), torch.as_tensor(y))), abs=1e-9)


def test_mean_ranks_are_scipys_average_ranks_with_ties():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    for _ in range(50):
        # few distinct values: most columns hold ties, some a single row or a single value
        x = rng.integers(0, 4, size=(int(rng.integers(1, 30)), int(rng.integers(1, 8)))) / 3
        np.testing.assert_array_equal(erc.metrics.mean_ranks(x), rankdata(x, axis=0))


def test_a_trial_process_does_not_import_scipy_stats():
    # ~0.5 s of import in every trial actor for one ranking; the trial's whole import path is checked
    code = "import sys, sweeps.trainable; print('scipy.stats' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(erc.metrics.__file__).resolve().parents[1])
    assert out.stdout.strip().splitlines()[-1] == "False"
