"""Validation metrics (DESIGN §5): torchmetrics' definitions, computed in a few vectorised lines.

Every epoch scores the held-out fold and the dev split, and every trial its robustness conditions, so
the scoring runs hundreds of times per trial on a few hundred rows: torchmetrics' functional calls
(≈ 4 ms per scoring, mostly argument checks and per-class dispatch) cost as much as an epoch of a
small head. The same numbers come from a confusion matrix, one rank transform and Lin's formula
(≈ 0.5 ms); ``tests/erc/test_metrics.py`` checks them against torchmetrics and scikit-learn.

Evaluation is the same for every label arm so that arms can be paired fold by fold (DESIGN §3):
classification metrics use only the utterances with a unique majority class (``target >= 0``),
scored against that class; the valence/arousal metrics use every utterance.

- ``acc``, ``micro_f1``: accuracy (equal for single-label multiclass, as in the seed's tables).
- ``macro_f1``: mean F1 over the classes that occur in the targets or the predictions
  (torchmetrics ignores classes with tp + fp + fn = 0; scikit-learn's default label set agrees).
- ``auroc``: macro one-vs-rest AUROC over the classes present in the targets; a class absent from
  the fold has no defined AUROC and is left out of the mean (NaN if fewer than 2 classes remain).
  Each class's AUROC is the Mann–Whitney statistic of its softmax scores (tied scores count ½), the
  exact area under the ROC curve that torchmetrics and scikit-learn integrate.
- ``ccc_valence``, ``ccc_arousal``: Lin's concordance correlation coefficient as torchmetrics computes
  it, ``2·cov / (var_pred + var_true + (mean_pred - mean_true)²)`` with sample (n-1) moments. A corpus
  without dimensions (ratings of shape (N, 0)) has none: the keys are absent, not NaN.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

from erc.heads import split_output
from erc.losses import LossConfig, multitask_loss

# the names and their directions live in erc.vocab; re-exported here, where the metrics are computed
from erc.vocab import (
    CLASSIFICATION_METRICS,
    LOSS_KEYS,
    METRIC_KEYS,
    MINIMISE,
    REGRESSION_METRICS,
    check_metric,
    metric_mode,
)

__all__ = ["LOSS_KEYS", "METRIC_KEYS", "MINIMISE", "ccc", "check_metric", "classification_metrics",
           "evaluate_outputs", "is_better", "metric_mode", "regression_metrics", "validation_metrics"]


def _float(x: Tensor) -> float:
    return float(x.detach().cpu())


def confusion_matrix(target: Tensor, pred: Tensor, n_classes: int) -> Tensor:
    """(K, K) counts of class indices, rows = targets, columns = predictions."""
    return torch.bincount(target * n_classes + pred, minlength=n_classes**2).reshape(n_classes, n_classes)


def classification_metrics(logits: Tensor | np.ndarray, target: Tensor | np.ndarray) -> dict[str, float]:
    """acc, macro_f1, micro_f1, auroc of (N, K) ``logits`` against class indices; rows with target -1 skipped."""
    logits, target = torch.as_tensor(logits, dtype=torch.float32), torch.as_tensor(target).long()
    n_classes = logits.shape[1]
    keep = target >= 0
    logits, target = logits[keep], target[keep]
    if target.numel() == 0:
        return dict.fromkeys(CLASSIFICATION_METRICS, math.nan)
    confusion = confusion_matrix(target, logits.argmax(dim=1), n_classes)
    tp = confusion.diag().double()
    fp, fn = confusion.sum(0).double() - tp, confusion.sum(1).double() - tp
    seen = (tp + fp + fn) > 0  # a class neither in the targets nor predicted has no F1 (left out)
    acc = float(tp.sum() / target.numel())
    out = {"acc": acc, "macro_f1": float((2 * tp / (2 * tp + fp + fn))[seen].mean()), "micro_f1": acc}
    present = confusion.sum(1) > 0
    if int(present.sum()) < 2:
        out["auroc"] = math.nan
        return out
    scores = logits.softmax(dim=1).numpy().astype(np.float64)
    positive = (target[:, None] == torch.arange(n_classes)).numpy()  # (N, K)
    ranks = mean_ranks(scores)  # tied scores share their mean rank: a tie counts ½
    n_pos = positive.sum(0)
    n_neg = len(target) - n_pos
    with np.errstate(invalid="ignore", divide="ignore"):  # a class without positives: left out below
        per_class = ((ranks * positive).sum(0) - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    out["auroc"] = float(per_class[present.numpy()].mean())
    return out


def mean_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..N down each column of ``x`` (N, K); tied values share their mean rank (what
    ``scipy.stats.rankdata(x, axis=0)`` gives, without importing scipy.stats into every trial process)."""
    out = np.empty(x.shape, dtype=np.float64)
    for k in range(x.shape[1]):
        _, inverse, counts = np.unique(x[:, k], return_inverse=True, return_counts=True)
        last = np.cumsum(counts)  # the rank of each distinct value's last copy
        out[:, k] = (last - (counts - 1) / 2)[inverse]
    return out


def ccc(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Concordance correlation coefficient of two 1-D series (NaN for fewer than 2 values).

    Lin's ``2·cov / (var_pred + var_true + (mean_pred - mean_true)²)`` with sample moments; constant
    predictions (an untrained head) give 0, where torchmetrics gives NaN, which would break epoch
    selection and t-tests."""
    pred = torch.as_tensor(pred, dtype=torch.float64).reshape(-1)
    target = torch.as_tensor(target, dtype=torch.float64).reshape(-1)
    if pred.numel() < 2:
        return math.nan
    mp, mt = pred.mean(), target.mean()
    cov = ((pred - mp) * (target - mt)).sum() / (pred.numel() - 1)
    den = pred.var() + target.var() + (mp - mt) ** 2
    return _float(2 * cov / den) if float(den) > 0 else math.nan


def regression_metrics(va_pred: Tensor | np.ndarray, va_target: Tensor | np.ndarray) -> dict[str, float]:
    """ccc_valence, ccc_arousal of (N, 2) predictions against (N, 2) ratings; {} for (N, 0) ones."""
    va_pred, va_target = torch.as_tensor(va_pred), torch.as_tensor(va_target)
    # one CCC per dimension, in erc.vocab.DIMENSIONS order (none without dimensions)
    return {name: ccc(va_pred[:, i], va_target[:, i])
            for i, name in enumerate(REGRESSION_METRICS[:va_target.shape[-1]])}


def evaluate_outputs(output: Tensor | np.ndarray, target: Tensor | np.ndarray, va_target: Tensor | np.ndarray) -> dict:
    """All non-loss metrics from a head's (N, classes + dimensions) output, class targets (-1 = tie) and
    (N, dimensions) ratings (no regression metrics for (N, 0))."""
    va_target = torch.as_tensor(va_target)
    logits, va_pred = split_output(torch.as_tensor(output, dtype=torch.float32), va_target.shape[-1])
    return {**classification_metrics(logits, target), **regression_metrics(va_pred, va_target)}


def is_better(value: float, best: float | None, metric: str) -> bool:
    """Strict improvement for the selection metric (min for losses, max otherwise); NaN never wins."""
    if value is None or math.isnan(value):
        return False
    if best is None or math.isnan(best):
        return True
    return value < best if metric_mode(metric) == "min" else value > best


def validation_metrics(output: Tensor, majority: Tensor, va: Tensor, loss: LossConfig) -> dict[str, float]:
    """Every metric and loss of a head's (N, classes + dimensions) ``output`` on rows with class ``majority``
    (-1 = tie: out of the classification metrics and ``cls_loss``) and (N, dimensions) ratings ``va``: the
    one scoring of the held-out fold, the dev split and the robustness conditions."""
    output = output.float()
    has_class = majority >= 0
    with torch.no_grad():
        parts = multitask_loss(output, majority.clamp_min(0), va, loss.cls_coef, loss.focal_gamma, has_class,
                               focal=loss.focal)
    metrics = {
        **evaluate_outputs(output.cpu(), majority.cpu(), va.cpu()),
        "loss": float(parts.loss),
        "cls_loss": float(parts.cls_loss) if bool(has_class.any()) else math.nan,
        "reg_loss": float(parts.reg_loss),
    }
    if va.shape[-1] == 0:  # no ratings (CREMA-D): no regression loss to report (absent, not NaN)
        del metrics["reg_loss"]
    return metrics
